"""The real web server, as bin/eru runs it (gunicorn, gthread workers), on the test database."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def gunicorn(tmp_path: Path, *, workers: int = 1, **env_extra: str) -> Iterator[str]:
    """gunicorn on a free port of 127.0.0.1 with these settings (environment variables): its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    env.update(ERU_ETCD_PREFIX=settings.ERU_ETCD_PREFIX, **env_extra)
    if db["ENGINE"].endswith("sqlite3"):
        env["ERU_DB"] = str(db["NAME"])
    else:
        env["ERU_DATABASE"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f'control_socket = "{tmp_path}/g.ctl"\n')
    argv = [
        str(ROOT / ".venv/bin/gunicorn"), "eru_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers",
        str(workers), "--worker-class", "gthread", "--threads", "80", "-c", str(conf),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(port), timeout=20)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


def _answers(port: int) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/api/")
        c.getresponse().read()
        return True
    except OSError:
        return False
