"""One file per schema revision, oldest first; Alembic chains them by ``down_revision``."""
