"""Deploy speed: 20 containers through the REST API and the Celery workers, against creating and
starting the same 20 containers with the docker SDK directly — same node, same run.

Usage: .venv/bin/python bench/deploy.py [--count 20] [--rounds 3]
Starts its own services under var/bench (one dockerd node, etcd, Redis), a gunicorn web server and a
Celery worker, and stops them at the end. Prints the medians and the ratio (target: at most 1.5×)."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "var" / "bench"
PORT = 26780
IMAGE = "eru/busybox:latest"


def sh(cmd: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    return subprocess.run(
        shlex.split(cmd), cwd=ROOT, env=env, check=True, capture_output=True, text=True, input=stdin
    ).stdout


def load_env(
    directory: Path = DIR, db: str = "bench.sqlite3", password: str = "bench-password", heartbeat: str = "5"
) -> dict[str, str]:
    """The services' environment (their env file under `directory`), for a bench's own portal."""
    env = dict(os.environ)
    for line in (directory / "env").read_text().splitlines():
        if line.startswith("export "):
            k, _, v = line[7:].partition("=")
            env[k] = v.strip().strip('"').strip("'")
    env.update(
        ERU_DB=str(directory / db),
        ERU_VAR_DIR=str(directory),
        ERU_LOG_LEVEL="WARNING",
        ERU_ADMIN_PASSWORD=password,
    )
    if heartbeat:
        env["ERU_HEARTBEAT_INTERVAL"] = heartbeat
    env.pop("REQUESTS_CA_BUNDLE", None)
    env.pop("CURL_CA_BUNDLE", None)
    return env


def start(
    env: dict[str, str],
    *,
    port: int | None = None,
    extra: Sequence[str] = (),
    ready: Callable[[], object] | None = None,
) -> list[subprocess.Popen[bytes]]:
    """The web server on `port` (PORT), a Celery worker and beat, and the `extra` commands (run from
    the checkout, `{py}` the venv's python), once the web answers and `ready` returns."""
    py = str(ROOT / ".venv" / "bin" / "python")
    port = port or PORT
    (DIR / "bench.sqlite3").unlink(missing_ok=True)
    sh(f"{py} manage.py migrate --noinput", env)
    sh(f"{py} manage.py eru_bootstrap", env)
    logs = open(DIR / "bench-procs.log", "ab")  # noqa: SIM115 — kept open for the children
    bin_dir = ROOT / ".venv" / "bin"
    commands = [
        f"{bin_dir}/gunicorn eru_site.wsgi --bind 127.0.0.1:{port} --workers 2",
        *(cmd.format(py=py) for cmd in extra),
        f"{bin_dir}/celery -A eru_site worker --pool=threads -Q celery,heartbeat,lambda -c 8 "
        "--without-gossip --without-mingle --without-heartbeat -l warning",
        f"{bin_dir}/celery -A eru_site beat -l warning --schedule {DIR / 'beat-schedule'}",
    ]
    procs = [
        subprocess.Popen(shlex.split(cmd), cwd=ROOT, env=env, stdout=logs, stderr=logs) for cmd in commands
    ]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/api/", timeout=1)
            if ready is not None:
                ready()
            break
        except Exception:  # noqa: BLE001 — not up yet (requests' or `ready`'s error): look again
            time.sleep(0.2)
    time.sleep(2)  # the worker connects to the broker
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """The web server and the workers, then the services."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    sh(f"bin/services down --dir {DIR.relative_to(ROOT)}")


def client_of(env: dict[str, str], pool: int = 10) -> docker.DockerClient:
    """The services' first node, over mutual TLS, trusting only its own CA."""
    tls_dir = Path(env["ERU_TLS_DIR"])
    cert = (str(tls_dir / "cert.pem"), str(tls_dir / "key.pem"))
    tls = docker.tls.TLSConfig(client_cert=cert, ca_cert=str(tls_dir / "ca.pem"), verify=True)
    endpoint = env["ERU_NODES"].split()[0].split("=", 1)[1]
    client = docker.DockerClient(base_url=endpoint, tls=tls, version="1.41", max_pool_size=pool)
    client.api.trust_env = False
    return client


def token(session: requests.Session) -> None:
    r = session.post(
        f"http://127.0.0.1:{PORT}/api/auth/token/",
        json={"username": "admin", "password": "bench-password"},
        timeout=10,
    )
    r.raise_for_status()
    session.headers["Authorization"] = f"Token {r.json()['token']}"


def via_api(session: requests.Session, count: int, round_no: int) -> float:
    body = {
        "pod": "eru",
        "app": f"bench{round_no}",
        "entrypoint": "api",
        "image": IMAGE,
        "count": count,
        "command": ["sleep", "3600"],
        "cpu_limit": 0.05,
        "memory_limit": "16M",
        "cpu_bind": False,
    }
    return deployed(session, f"http://127.0.0.1:{PORT}/api", body)


def deployed(session: requests.Session, api: str, body: dict[str, object]) -> float:
    """Seconds from the REST API's POST of a deploy until polling finds it done (exits if it failed)."""
    t0 = time.perf_counter()
    r = session.post(f"{api}/deployments/", json=body, timeout=30)
    r.raise_for_status()
    url = f"{api}/deployments/{r.json()['id']}/"
    while True:
        d = session.get(url, timeout=10).json()
        if d["state"] != "running":
            elapsed = time.perf_counter() - t0
            if d["state"] != "done":
                sys.exit(f"deployment ended {d['state']}: {d}")
            return elapsed
        time.sleep(0.02)


def via_sdk(client: docker.DockerClient, count: int, round_no: int, threads: int = 1) -> float:
    def one(i: int) -> None:
        c = client.containers.create(
            IMAGE,
            ["sleep", "3600"],
            name=f"sdk{round_no}_{i}",
            labels={"ERU": "1"},
            cpu_period=100000,
            cpu_quota=5000,
            mem_limit=16 << 20,
            memswap_limit=16 << 20,
            mem_reservation=8 << 20,
            detach=True,
        )
        c.start()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - t0


def clean(client: docker.DockerClient) -> None:
    for c in client.containers.list(all=True, filters={"label": "ERU=1"}):
        c.remove(force=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sh(f"bin/services up --dir {DIR.relative_to(ROOT)} --nodes 1 --port-base 26700")
    env = load_env()
    procs = start(env)
    try:
        client = client_of(env)
        session = requests.Session()
        session.trust_env = False
        token(session)
        api, sdk, sdk_par = [], [], []
        for r in range(args.rounds):
            clean(client)
            sdk.append(via_sdk(client, args.count, r))
            clean(client)
            sdk_par.append(via_sdk(client, args.count, r, threads=8))
            clean(client)
            api.append(via_api(session, args.count, r))
            for w in session.get(f"http://127.0.0.1:{PORT}/api/workloads/?limit=1000", timeout=30).json()[
                "results"
            ]:
                session.delete(f"http://127.0.0.1:{PORT}/api/workloads/{w['id']}/", timeout=30)
            time.sleep(3)
        m_api, m_sdk, m_par = (statistics.median(x) for x in (api, sdk, sdk_par))
        print(f"deploy {args.count} containers, median of {args.rounds} rounds")
        print(f"  docker SDK directly, sequential : {m_sdk:6.2f} s   (baseline)")
        print(f"  docker SDK directly, 8 threads  : {m_par:6.2f} s")
        print(f"  REST API + Celery workers       : {m_api:6.2f} s")
        print(f"ratio api/sdk-sequential = {m_api / m_sdk:.2f}x (target <= 1.5x)")
        print(f"ratio api/sdk-8-threads  = {m_api / m_par:.2f}x")
        clean(client)
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
