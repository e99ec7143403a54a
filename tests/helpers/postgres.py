"""A throwaway PostgreSQL server on loopback, started by the tests themselves from Debian's binaries.

Example::

    with PostgresServer() as server:
        engine = sqlalchemy.create_engine(server.url)  # postgresql+psycopg://clf@127.0.0.1:PORT/clf
        study = optuna.create_study(storage=server.url)

Each server gets its own data folder (``initdb -A trust -U clf``) under a temporary directory, listens only on
127.0.0.1 on a free port, keeps its unix socket in that directory and runs with ``fsync=off``: it is for tests, not
for data. ``stop()`` shuts it down (``pg_ctl stop -m fast``) and removes the directory; ``stop(keep_data=True)``
keeps it, and ``restart()`` then brings the same cluster back on the same port (a database outage in a test). initdb
and postgres refuse to run as root, so as root they run as the ``postgres`` system user (created if missing).
Connecting needs psycopg 3 (``psycopg[binary]``); starting the server needs only the binaries (``apt-get install
postgresql``).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers.loopback import free_port

logger = logging.getLogger(__name__)

PG_ROOT = Path("/usr/lib/postgresql")
"""Where Debian installs each major version's binaries (``/usr/lib/postgresql/15/bin``)."""
SYSTEM_USER = "postgres"
"""The account the server runs as when the tests run as root."""
SUPERUSER = "clf"
DATABASE = "clf"
INSTALL_HINT = "apt-get install postgresql  (Debian/Ubuntu; .ci/run does this on a fresh machine)"
_START_TRIES = 3  # a free port can be taken by someone else between probing it and postgres binding it
_CONF_MARKER = "\n# clf tests\n"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb, pg_ctl and postgres, or None."""
    candidates = [
        d / "bin"
        for d in PG_ROOT.glob("*")
        if all((d / "bin" / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))
    ]
    return max(candidates, key=lambda b: _version_key(b.parent.name), default=None)


def postgres_available() -> bool:
    """Whether PostgreSQL's server binaries are installed, so that `PostgresServer` can start."""
    return find_bin_dir() is not None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (-1,)


def _conf_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class PostgresServer:
    """A private PostgreSQL server on 127.0.0.1 for one test session; a context manager.

    Args:
        bin_dir: Folder holding initdb, pg_ctl and postgres; defaults to the newest ``/usr/lib/postgresql/*/bin``.
        startup_timeout: Seconds to wait for the server to accept connections.

    Raises:
        RuntimeError: From `start` when the binaries are missing (with the install command) or the server does not
            come up (with the tail of its log).
    """

    def __init__(self, bin_dir: Path | None = None, startup_timeout: float = 30.0) -> None:
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be > 0 seconds, got {startup_timeout}")
        self.bin_dir = bin_dir
        self.startup_timeout = startup_timeout
        self._root: Path | None = None
        self._port: int | None = None
        self._as_server_user = False
        self.startup_seconds: float | None = None
        """How long the last `start` took, initdb included."""

    # Lifecycle ------------------------------------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Creates a cluster, starts it on a free loopback port and creates the ``clf`` database; returns self."""
        if self._root is not None:
            raise RuntimeError("the server is already running")
        bin_dir = self.bin_dir or find_bin_dir()
        if bin_dir is None or not (bin_dir / "pg_ctl").is_file():
            raise RuntimeError(
                f"PostgreSQL server binaries not found under {bin_dir or PG_ROOT / '*/bin'}; "
                f"the tests that need a real database start their own server. Install it: {INSTALL_HINT}"
            )
        self.bin_dir = bin_dir
        began = time.monotonic()
        self._root = Path(tempfile.mkdtemp(prefix="clf-pg-"))
        try:
            self._as_server_user = os.geteuid() == 0
            if self._as_server_user:
                _ensure_system_user()
                shutil.chown(self._root, user=SYSTEM_USER, group=pwd.getpwnam(SYSTEM_USER).pw_gid)
            self._run(
                "initdb", "-D", str(self.data_dir), "-A", "trust", "-U", SUPERUSER,
                "--encoding", "UTF8", "--no-locale", "--no-sync", "--no-instructions",
            )  # fmt: skip
            self._start_postmaster()
            self._run("createdb", *self._client_args(), DATABASE, as_server_user=False)
        except BaseException:
            self._cleanup()
            raise
        self.startup_seconds = time.monotonic() - began
        logger.info("PostgreSQL %s on port %d started in %.1f s", bin_dir.parent.name, self.port, self.startup_seconds)
        return self

    def stop(self, keep_data: bool = False) -> None:
        """Stops the server (fast shutdown: open sessions are cut) and removes its directory. Idempotent.

        Args:
            keep_data: keep the data folder and the port instead, so that `restart` brings the same cluster back on
                the same address (a database outage in a test). A later plain `stop` removes them.
        """
        if self._root is None:
            return
        try:
            if self.running:
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30")
        finally:
            if not keep_data:
                self._cleanup()

    def restart(self) -> PostgresServer:
        """Starts the cluster again on the same port with the same data (stopping it first if it runs); returns self.

        Raises:
            RuntimeError: when there is no cluster to restart (never started, or stopped without ``keep_data``), or
                the port was taken meanwhile (with the tail of the server log).
        """
        if self._root is None or self._port is None:
            raise RuntimeError("nothing to restart: start() the server first, and stop it with stop(keep_data=True)")
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30")
        self._start_postmaster(port=self._port)
        logger.info("PostgreSQL restarted on port %d", self._port)
        return self

    @property
    def running(self) -> bool:
        """Whether the postmaster runs (False after `stop`, also with ``keep_data``)."""
        return self._root is not None and (self.data_dir / "postmaster.pid").exists()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Addresses ------------------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        if self._port is None or self._root is None:
            raise RuntimeError("the server is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``clf`` database: ``postgresql+psycopg://clf@127.0.0.1:PORT/clf``."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        """libpq connection string of the ``clf`` database, for psycopg or psql."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data_dir(self) -> Path:
        """The cluster's data folder (inside the temporary directory)."""
        if self._root is None:
            raise RuntimeError("the server is not running; call start() first")
        return self._root / "data"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        if self._root is None:
            raise RuntimeError("the server is not running; call start() first")
        return self._root / "server.log"

    # Internals ------------------------------------------------------------------------------------------------------

    def _start_postmaster(self, port: int | None = None) -> None:
        """Starts the postmaster on `port`, or on a free port (retrying another when it is taken meanwhile)."""
        conf = self.data_dir / "postgresql.conf"
        base_conf = conf.read_text().split(_CONF_MARKER)[0]
        for attempt in range(1, _START_TRIES + 1):
            self._port = port if port is not None else free_port()
            settings = {
                "listen_addresses": _conf_string("127.0.0.1"),
                "port": str(self._port),
                "unix_socket_directories": _conf_string(str(self._root)),
                # Durability is worthless for a throwaway test cluster; these make commits cheap.
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
            }
            conf.write_text(base_conf + _CONF_MARKER + "".join(f"{k} = {v}\n" for k, v in settings.items()))
            try:
                self._run(
                    "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path),
                    "-w", "-t", str(max(1, round(self.startup_timeout))),
                )  # fmt: skip
                return
            except RuntimeError as error:
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                if "could not bind" in log and attempt < _START_TRIES and port is None:
                    logger.warning("port %d was taken; retrying on another", self._port)
                    self.log_path.unlink()
                    continue
                raise RuntimeError(f"{error}\nserver log {self.log_path}:\n{log[-3000:]}") from None

    def _client_args(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER]

    def _run(self, program: str, *args: str, as_server_user: bool | None = None) -> None:
        assert self.bin_dir is not None and self._root is not None
        command = [str(self.bin_dir / program), *args]
        if self._as_server_user if as_server_user is None else as_server_user:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # a stray PGPORT must not redirect us
        # cwd: the postgres user may not be able to enter the caller's folder. Capturing output through pipes is safe
        # because pg_ctl start -l points the daemonised postmaster's stdout/stderr at the log file, not our pipes.
        result = subprocess.run(
            command, cwd=self._root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited with status {result.returncode}:\n{result.stdout}{result.stderr}"
            )

    def _cleanup(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._root = None
        self._port = None


def _ensure_system_user() -> None:
    """Creates the ``postgres`` system account unless it exists (Debian's package creates it)."""
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER], check=True
        )
