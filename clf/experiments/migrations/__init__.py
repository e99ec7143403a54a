"""Alembic migrations of the experiment tables; run them with `clf.experiments.database.upgrade` (``clf db upgrade``).

A new migration: change `clf.experiments.tables`, then let Alembic write the revision against a database at head::

    python -c "from alembic import command; from clf.experiments.database import alembic_config, make_engine;
    engine = make_engine('sqlite:///scratch.db'); conn = engine.connect();
    command.revision(alembic_config(conn), 'add a column', autogenerate=True)"

and read the generated file in ``versions/`` before committing it.
"""
