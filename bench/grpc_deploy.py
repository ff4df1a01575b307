"""Deploy speed over the gRPC door: CreateWorkload of 20 containers, as Eru's erucli sends it, until
its last message, against the REST API's POST plus polling until the deployment is done — same
services, same node, same run, alternating which goes first.

Usage: .venv/bin/python bench/grpc_deploy.py [--count 20] [--rounds 5]
Starts its own services under var/bench-grpc (bench/deploy.py's helpers: one dockerd node, etcd,
Redis), a gunicorn web server, the gRPC door (manage.py eru_grpc) and a Celery worker, and stops them
at the end. Prints the medians and the ratio (target: at most 1.1×)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import deploy  # noqa: E402
from deploy import IMAGE, ROOT, clean, client_of, load_env, sh  # noqa: E402

from protocol import core_pb2 as pb  # noqa: E402
from protocol import core_pb2_grpc as pb_grpc  # noqa: E402

DIR = ROOT / "var" / "bench-grpc"
PORT_BASE = 25200  # services at +32, +60…, +79, +90 (embedded.config): +80 and +81 are free
PORT = PORT_BASE + 80  # the web server
GRPC = f"127.0.0.1:{PORT_BASE + 81}"
API = f"http://127.0.0.1:{PORT}/api"
PASSWORD = "bench-password"
COMMAND = ["sleep", "3600"]
MiB = 1 << 20


def start(env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """bench/deploy.py's processes (its own directory and ports), and the gRPC door."""
    return deploy.start(
        env,
        port=PORT,
        extra=[f"{{py}} manage.py eru_grpc --address {GRPC}"],
        ready=lambda: grpc.channel_ready_future(grpc.insecure_channel(GRPC)).result(timeout=1),
    )


def token(session: requests.Session) -> None:
    r = session.post(f"{API}/auth/token/", json={"username": "admin", "password": PASSWORD}, timeout=10)
    r.raise_for_status()
    session.headers["Authorization"] = f"Token {r.json()['token']}"


def via_api(session: requests.Session, count: int, app: str) -> float:
    body = {"pod": "eru", "app": app, "entrypoint": "api", "image": IMAGE, "count": count,
            "command": COMMAND, "cpu_limit": 0.05, "memory_limit": "16M", "cpu_bind": False}  # fmt: skip
    return deploy.deployed(session, API, body)


def via_grpc(stub: pb_grpc.CoreRPCStub, count: int, app: str) -> float:
    """erucli workload deploy --pod eru --entry grpc --count N --network bridge --cpu 0.05 --memory 16M."""
    cpumem = {"cpu-request": 0, "cpu-limit": 0.05, "memory-request": 0, "memory-limit": 16 * MiB}
    storage = {"storage-request": 0, "storage-limit": 0, "volumes-request": None, "volumes-limit": None}
    opts = pb.DeployOptions(
        name=app,
        entrypoint=pb.EntrypointOptions(name="grpc", commands=COMMAND),
        resources={"cpumem": json.dumps(cpumem).encode(), "storage": json.dumps(storage).encode()},
        podname="eru",
        node_filter=pb.NodeFilter(),
        image=IMAGE,
        count=count,
        networks={"bridge": ""},
        user="root",
    )
    t0 = time.perf_counter()
    messages = list(stub.CreateWorkload(opts, metadata=(("admin", PASSWORD),), timeout=120))
    elapsed = time.perf_counter() - t0
    failed = [m.error for m in messages if not m.success]
    if len(messages) != count or failed:
        sys.exit(f"gRPC deploy: {len(messages)} messages of {count}, failed: {failed[:3]}")
    return elapsed


def remove_all(session: requests.Session) -> None:
    for w in session.get(f"{API}/workloads/?limit=1000", timeout=30).json()["results"]:
        session.delete(f"{API}/workloads/{w['id']}/", timeout=30)
    deadline = time.monotonic() + 60
    while session.get(f"{API}/workloads/?limit=1", timeout=30).json()["results"]:
        if time.monotonic() > deadline:
            sys.exit("workloads not removed within 60 s")
        time.sleep(0.2)


def _shown(times: list[float]) -> str:
    return " ".join(f"{t:.2f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sh(f"bin/services up --dir {DIR.relative_to(ROOT)} --nodes 1 --port-base {PORT_BASE} --no-postgres")
    env = load_env(DIR)
    env["ERU_GRPC_ADDRESS"] = GRPC
    procs = start(env)
    try:
        client = client_of(env)
        clean(client)
        session = requests.Session()
        session.trust_env = False
        token(session)
        stub = pb_grpc.CoreRPCStub(grpc.insecure_channel(GRPC))
        results: dict[str, list[float]] = {"api": [], "grpc": []}
        for r in range(args.rounds):
            order = ("grpc", "api") if r % 2 == 0 else ("api", "grpc")
            for way in order:
                app = f"bench{r}{way}"
                took = via_grpc(stub, args.count, app) if way == "grpc" else via_api(session, args.count, app)
                results[way].append(took)
                remove_all(session)
                time.sleep(1)
        m = {k: statistics.median(v) for k, v in results.items()}
        print(f"deploy {args.count} containers, median of {args.rounds} rounds (alternating first)")
        print(
            f"  REST API POST + polling until done : {m['api']:6.2f} s   (baseline)  {_shown(results['api'])}"
        )
        grpc_line = f"  gRPC CreateWorkload, last message  : {m['grpc']:6.2f} s"
        print(f"{grpc_line}               {_shown(results['grpc'])}")
        print(f"ratio grpc/rest = {m['grpc'] / m['api']:.2f}x (target <= 1.1x)")
        clean(client)
    finally:
        stop_all(procs)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """bench/deploy.py's stop, for this bench's directory."""
    deploy.DIR = DIR
    deploy.stop(procs)


if __name__ == "__main__":
    main()
