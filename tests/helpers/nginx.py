"""A real nginx (Debian's ``nginx``) on a loopback port, load-balancing over `clf serve` replicas, for the fleet tests.

The configuration is what docs/SCALING.md recommends in front of replicas: round robin, ``proxy_next_upstream error
timeout http_502 http_503 non_idempotent`` with ``proxy_next_upstream_tries 3`` — a request whose replica dies or
refuses the connection is sent to the next one (POST /predict is safe to repeat: a classification changes nothing),
and a replica that fails is left out for ``fail_timeout``. nginx runs in the foreground (``daemon off``) with every
path under a temporary prefix; as root its worker runs as root too, so it can read that prefix.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import requests

from tests.helpers.loopback import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
INSTALL_HINT = "apt-get install nginx-light  (.ci/run does this on a fresh machine)"


def nginx_available() -> bool:
    """Whether the nginx binary is installed."""
    return Path(NGINX).is_file()


CONFIG = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{user}
events {{ worker_connections 512; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream clf {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 2m;
        location / {{
            proxy_pass http://clf;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_connect_timeout 2s;
            proxy_read_timeout 35s;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


class NginxServer:
    """nginx on 127.0.0.1 in front of `upstreams` (``host:port`` each) while the context is open.

    Args:
        upstreams: the replicas' addresses.
        fail_timeout: seconds a failed replica is left out.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        prefix: the folder holding its configuration and logs.
    """

    def __init__(self, upstreams: Sequence[str], fail_timeout: float = 5.0) -> None:
        self.upstreams = list(upstreams)
        self.fail_timeout = fail_timeout
        self.prefix = Path(tempfile.mkdtemp(prefix="clf-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """The configuration it runs with."""
        servers = "\n".join(
            f"        server {address} max_fails=1 fail_timeout={self.fail_timeout:g}s;" for address in self.upstreams
        )
        user = "user root;" if os.geteuid() == 0 else ""
        return CONFIG.format(prefix=self.prefix, user=user, servers=servers, port=self.port)

    def __enter__(self) -> NginxServer:
        (self.prefix / "nginx.conf").write_text(self.config())
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited with {self.process.returncode}:\n{self.error_log()[-3000:]}")
            try:
                requests.get(f"{self.url}/health", timeout=2)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"nginx did not answer on {self.url}:\n{self.error_log()[-3000:]}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        shutil.rmtree(self.prefix, ignore_errors=True)

    def error_log(self) -> str:
        """nginx's error log so far."""
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.is_file() else ""
