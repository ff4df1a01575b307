"""Lambda speed: 20 lambdas of `echo` at 0.5 cpu through the REST API (each posted, its output read to
its end from the output stream) against the docker SDK directly doing what a lambda does — create,
start, wait, logs, remove — at the same concurrency (the worker's 8 threads), same node, same run.

Usage: .venv/bin/python bench/lambda.py [--count 20] [--rounds 3]
Starts its own services under var/bench (one dockerd node, etcd, Redis), gunicorn, a Celery worker and
beat (bench/deploy.py's), and stops them at the end (target: at most 1.3x)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy import DIR, IMAGE, PORT, ROOT, clean, client_of, load_env, sh, start, stop, token  # noqa: E402

THREADS = 8  # the worker's (bin/eru: --pool=threads -c 8)


def via_api(session: requests.Session, count: int) -> float:
    body = {"pod": "eru", "image": IMAGE, "command": ["echo", "hello"], "cpu_request": 0.5, "cpu_limit": 0.5,
            "memory_limit": "64M", "cpu_bind": False, "timeout": 60}  # fmt: skip

    def one(_: int) -> None:
        r = session.post(f"http://127.0.0.1:{PORT}/api/lambdas/", json=body, timeout=30)
        r.raise_for_status()
        url = f"http://127.0.0.1:{PORT}/api/lambdas/{r.json()['id']}/output/"
        with session.get(url, stream=True, timeout=(10, 120)) as out:
            for raw in out.iter_lines():
                if raw and (event := json.loads(raw))["event"] == "end":
                    if event["exit_code"] != 0 or event["state"] != "done":
                        sys.exit(f"a lambda ended {event}")
                    return
        sys.exit("a lambda's output ended without its end")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - t0


def via_sdk(client: docker.DockerClient, count: int, round_no: int) -> float:
    def one(i: int) -> None:
        c = client.containers.create(IMAGE, ["echo", "hello"], name=f"sdk{round_no}_{i}", labels={"ERU": "1"},
                                     nano_cpus=500_000_000, mem_limit=64 << 20, detach=True)  # fmt: skip
        c.start()
        if c.wait(timeout=60)["StatusCode"] != 0:
            sys.exit("an sdk container failed")
        assert c.logs() == b"hello\n"
        c.remove(force=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sh(f"bin/services up --dir {DIR.relative_to(ROOT)} --nodes 1 --port-base 26700")
    env = load_env()
    procs = start(env)
    try:
        client = client_of(env, pool=THREADS)
        session = requests.Session()
        session.trust_env = False
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=THREADS))
        token(session)
        via_api(session, 2)  # warm: the worker's first task, the first stream
        api, sdk = [], []
        for r in range(args.rounds):
            clean(client)
            sdk.append(via_sdk(client, args.count, r))
            api.append(via_api(session, args.count))
        m_api, m_sdk = statistics.median(api), statistics.median(sdk)
        print(f"{args.count} lambdas of echo at 0.5 cpu, {THREADS} at once, median of {args.rounds} rounds")
        print(f"  docker SDK: create, start, wait, logs, remove : {m_sdk:6.2f} s   (baseline)")
        print(f"  REST API + worker, output read to its end     : {m_api:6.2f} s")
        print(f"ratio = {m_api / m_sdk:.2f}x (target <= 1.3x)")
        clean(client)
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
