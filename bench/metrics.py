"""Metrics: (1) one usage poll of the core (agents/usage.py: one-shot stats of every running workload,
both nodes at once, CPU rates, the history written) over 50, 100 and 200 containers on two nodes,
against the raw one-shot stats calls at the same concurrency, same run (target: at most 1.2x, growing
linearly); (2) the agent's own CPU per 100 containers at the default metrics step (10 s), with
/metrics scraped each step; (3) the history's storage per 1,000 workloads, full (an hour of 15 s
steps and a day of 5 min steps each), in SQLite.

Usage: .venv/bin/python bench/metrics.py [--rounds 5]
Starts its own services under var/bench-metrics (two dockerd nodes, etcd, Redis; port base 29900)."""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import ROOT, grow, services, setup_nodes  # noqa: E402  (bench/sweep.py)

DIR = ROOT / "var" / "bench-metrics"
SIZES = (50, 100, 200)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with services(DIR, nodes=2, port_base=29900):
        run(args.rounds)


def run(rounds: int) -> None:
    pod, nodes, clients = setup_nodes()
    from django.conf import settings

    from agents import usage
    from clusters.models import Workload

    concurrency = settings.ERU_STATS_CONCURRENCY
    pools = {n.name: ThreadPoolExecutor(concurrency) for n in nodes}  # the raw calls' threads, kept
    both = ThreadPoolExecutor(len(nodes))

    def raw() -> float:
        ids = {
            n.name: list(Workload.objects.filter(node=n).values_list("container_id", flat=True))
            for n in nodes
        }
        t0 = time.perf_counter()

        def node_stats(name: str) -> None:
            client = clients[name]
            list(pools[name].map(lambda cid: client.api.stats(cid, stream=False, one_shot=True), ids[name]))

        list(both.map(node_stats, ids))
        return time.perf_counter() - t0

    def poll() -> float:
        t0 = time.perf_counter()
        polled = usage.poll(nodes)
        elapsed = time.perf_counter() - t0
        assert all(not p.errors for p in polled), polled
        return elapsed

    print(f"one usage poll against the raw one-shot stats calls ({concurrency} at once per node, both nodes")
    print(f"in parallel), median of {rounds} rounds")
    print(f"{'containers':>10} {'raw stats':>10} {'poll':>10} {'ratio':>7} {'poll/container':>15}")
    for total in SIZES:
        grow(pod, nodes, clients, total)
        poll()  # the first samples: rates from the next one on
        r, p = [], []
        for _ in range(rounds):
            r.append(raw())
            p.append(poll())
        rm, pm = statistics.median(r), statistics.median(p)
        line = f"{total:>10} {rm * 1000:>8.1f}ms {pm * 1000:>8.1f}ms {pm / rm:>6.2f}x"
        print(f"{line} {pm / total * 1e6:>12.0f} µs")
    print("target: at most 1.2x, growing linearly")
    agent_cpu(nodes[0], 100)
    storage(1000)


def agent_cpu(node: object, containers: int) -> None:
    """The agent of node1 over its `containers` (the first node holds half of the 200: grown to 100
    more on it), at the default step, /metrics scraped every step."""
    import psutil

    from agents import grpc_server
    from clusters import services
    from clusters.models import Node, Workload

    node1 = Node.objects.get(name="node1")
    running = Workload.objects.filter(node=node1).count()
    secret = services.node_secret_rotate(actor=services.SYSTEM, node=node1)
    server, port = grpc_server.serve("127.0.0.1:0", workers=4)
    (DIR / "agent.secret").write_text(secret)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api = s.getsockname()[1]
    sock = dict(i.split("=", 1) for i in os.environ["ERU_NODE_SOCKETS"].split())["node1"]
    argv = [
        sys.executable, "-m", "nodeagent", "--core", f"127.0.0.1:{port}", "--hostname", "node1",
        "--password-file", str(DIR / "agent.secret"), "--docker-endpoint", sock,
        "--run-dir", str(DIR / "run"), "--heartbeat-interval", "10", "--api-addr", f"127.0.0.1:{api}",
    ]  # fmt: skip
    agent = subprocess.Popen(argv, cwd=ROOT, stdout=(DIR / "agent.log").open("ab"), stderr=subprocess.STDOUT)
    try:
        proc = psutil.Process(agent.pid)
        time.sleep(25)  # started, every container listed, two steps sampled
        window, step = 60.0, 10.0
        before = proc.cpu_times()
        t0 = time.monotonic()
        while time.monotonic() - t0 < window:
            urllib.request.urlopen(f"http://127.0.0.1:{api}/metrics", timeout=5).read()
            time.sleep(step)
        after = proc.cpu_times()
        used = (after.user - before.user) + (after.system - before.system)
        elapsed = time.monotonic() - t0
        print(f"agent CPU, {running} running containers, metrics every {step:g} s (the default),", end=" ")
        print(f"{elapsed:.0f} s:")
        print(f"  {used / elapsed * 100 * (100 / running):.2f}% of one core per 100 containers;"
              f" RSS {proc.memory_info().rss / (1 << 20):.0f} MiB")  # fmt: skip
    finally:
        agent.terminate()
        agent.wait(15)
        server.stop(0)


def storage(workloads: int) -> None:
    """A full history for `workloads` rows (240 + 288 usage rows each), and what it costs in SQLite."""
    from datetime import UTC, datetime, timedelta

    from django.db import connection

    from clusters.models import Node, Workload, WorkloadUsage

    node = Node.objects.get(name="node1")
    pod = node.pod
    start = Workload.objects.count()
    rows = [
        Workload(name=f"hist_e_{i:06d}", pod=pod, node=node, app="hist", entrypoint="e", image="x",
                 container_id=f"{i:064x}", state=Workload.State.STOPPED)
        for i in range(start, start + workloads)
    ]  # fmt: skip
    Workload.objects.bulk_create(rows, batch_size=1000)
    ids = list(Workload.objects.filter(app="hist").values_list("pk", flat=True))

    def size() -> int:
        with connection.cursor() as c:
            c.execute("PRAGMA page_count")
            pages = c.fetchone()[0]
            c.execute("PRAGMA freelist_count")
            free = c.fetchone()[0]
            c.execute("PRAGMA page_size")
            return int((pages - free) * c.fetchone()[0])

    before = size()
    now = datetime.now(tz=UTC).replace(microsecond=0)
    full = dict(cpu=0.123456, memory=123456789, cpu_ns=1 << 40, sampled=1.7e9)  # noqa: C408
    for pk in ids:
        fine = [
            WorkloadUsage(
                workload_id=pk, step=15, at=now - timedelta(seconds=15 * k), **full
            )
            for k in range(240)
        ]  # fmt: skip
        coarse = [
            WorkloadUsage(
                workload_id=pk, step=300, at=now - timedelta(minutes=5 * k), n=20, cpu=0.12, memory=1 << 27
            )
            for k in range(288)
        ]
        WorkloadUsage.objects.bulk_create(fine + coarse, batch_size=1000)
    grown = size() - before
    count = WorkloadUsage.objects.filter(workload_id__in=ids).count()
    print(f"history storage, {workloads} workloads full (an hour of 15 s steps, a day of 5 min steps):")
    print(f"  {count} rows, {grown / (1 << 20):.1f} MiB in SQLite ({grown / count:.0f} bytes a row, indexes"
          f" included): {grown / workloads / 1024:.0f} KiB per workload")  # fmt: skip


if __name__ == "__main__":
    main()
