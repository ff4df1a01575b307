"""Replace speed: replacing 10 workloads through the REST API and the Celery workers (stop the old,
create and start the new, remove the old, each), against the same stop / create / start / remove
calls made with the docker SDK directly — same node, same run; one at a time (batch 1) and all at
once (batch 0 against 8 SDK threads, the worker's concurrency).

Usage: .venv/bin/python bench/replace.py [--count 10] [--rounds 3]
Starts its own services under var/bench (bench/deploy.py's), and stops them at the end. Prints the
medians and the ratios (target: at most 1.3×)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy import DIR, IMAGE, PORT, ROOT, clean, client_of, load_env, sh, start, stop, token  # noqa: E402

THREADS = 8
# Stops at once on SIGTERM (a bare sleep as pid 1 ignores it and waits out Docker's 10 s).
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
API = f"http://127.0.0.1:{PORT}/api"


def _final(session: requests.Session, deployment: int) -> dict[str, object]:
    while True:
        d: dict[str, object] = session.get(f"{API}/deployments/{deployment}/", timeout=10).json()
        if d["state"] != "running":
            if d["state"] != "done":
                sys.exit(f"deployment ended {d['state']}: {d}")
            return d
        time.sleep(0.02)


def deployed(session: requests.Session, app: str, count: int) -> None:
    body = {"pod": "eru", "app": app, "entrypoint": "e", "image": IMAGE, "count": count, "command": COMMAND,
            "cpu_limit": 0.05, "memory_limit": "16M", "cpu_bind": False}  # fmt: skip
    r = session.post(f"{API}/deployments/", json=body, timeout=30)
    r.raise_for_status()
    _final(session, r.json()["id"])


def via_api(session: requests.Session, app: str, batch: int, round_no: int) -> float:
    command = [*COMMAND, f"r{round_no}"]  # $0 of the script: a new command each round
    body = {"pod": "eru", "app": app, "entrypoint": "e", "batch": batch, "command": command}
    t0 = time.perf_counter()
    r = session.post(f"{API}/workloads/replace/", json=body, timeout=30)
    r.raise_for_status()
    _final(session, r.json()["id"])
    return time.perf_counter() - t0


def via_sdk(client: docker.DockerClient, count: int, round_no: int, threads: int) -> float:
    def make(name: str) -> docker.models.containers.Container:
        c = client.containers.create(
            IMAGE, COMMAND, name=name, labels={"ERU": "1"}, cpu_period=100000, cpu_quota=5000,
            mem_limit=16 << 20, memswap_limit=16 << 20, mem_reservation=8 << 20, detach=True,
        )  # fmt: skip
        c.start()
        return c

    with ThreadPoolExecutor(THREADS) as pool:
        olds = list(pool.map(make, [f"sdk{round_no}_{threads}_old{i}" for i in range(count)]))

    def one(i: int) -> None:
        olds[i].stop()
        make(f"sdk{round_no}_{threads}_new{i}")
        olds[i].remove(force=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sh(f"bin/services up --dir {DIR.relative_to(ROOT)} --nodes 1 --port-base 26700")
    env = load_env()
    procs = start(env)
    try:
        client = client_of(env, pool=THREADS)
        session = requests.Session()
        session.trust_env = False
        token(session)
        clean(client)
        deployed(session, "one", args.count)
        deployed(session, "all", args.count)
        results: dict[str, list[float]] = {"sdk1": [], "api1": [], "sdk8": [], "api0": []}
        for r in range(args.rounds):
            results["sdk1"].append(via_sdk(client, args.count, r, threads=1))
            results["api1"].append(via_api(session, "one", 1, r))
            results["sdk8"].append(via_sdk(client, args.count, r, threads=THREADS))
            results["api0"].append(via_api(session, "all", 0, r))
        m = {k: statistics.median(v) for k, v in results.items()}
        print(f"replace {args.count} workloads, median of {args.rounds} rounds")
        print(f"  docker SDK, one at a time       : {m['sdk1']:6.2f} s   (baseline)")
        print(f"  REST API + workers, batch 1     : {m['api1']:6.2f} s")
        print(f"  docker SDK, {THREADS} threads       : {m['sdk8']:6.2f} s   (baseline)")
        print(f"  REST API + workers, batch 0     : {m['api0']:6.2f} s")
        print(f"ratio batch 1 / sdk one at a time = {m['api1'] / m['sdk1']:.2f}x (target <= 1.3x)")
        print(f"ratio batch 0 / sdk {THREADS} threads    = {m['api0'] / m['sdk8']:.2f}x (target <= 1.3x)")
        clean(client)
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
