"""Sweep speed: one sweep over 100, 200 and 400 containers on two nodes, against the raw Docker list
calls it needs (one per node, over the same mutual-TLS clients, both nodes at once) — same run.
Then the time from a container's exit to the API showing it, with the sweep at its default interval.

Usage: .venv/bin/python bench/sweep.py [--rounds 7] [--exits 6]
Starts its own services under var/bench-sweep (two dockerd nodes, etcd, Redis; port base 26900) and
stops them at the end. Prints medians, the ratios sweep/raw per size, fresh and steady (target:
steady at most 1.2x) and the time per container (linear growth: about constant)."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "var" / "bench-sweep"
IMAGE = "eru/busybox:latest"
SIZES = (100, 200, 400)


def sh(cmd: str) -> None:
    subprocess.run(shlex.split(cmd), cwd=ROOT, check=True, capture_output=True, text=True)


def load_env(directory: Path) -> None:
    """This process set up as the services under `directory` want it (their env file, a DB there)."""
    for line in (directory / "env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[7:].partition("=")
            os.environ[key] = value.strip().strip('"')
    for key in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(key, None)
    os.environ.update(
        ERU_DB=str(directory / "bench.sqlite3"),
        ERU_VAR_DIR=str(directory),
        ERU_LOG_LEVEL="WARNING",
        ERU_ETCD_PREFIX="/eru-bench",
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "eru_site.settings")
    sys.path.insert(0, str(ROOT))


@contextlib.contextmanager
def services(directory: Path, *, nodes: int, port_base: int) -> Iterator[None]:
    """A bench's own services under `directory`, fresh (no container or DB of an earlier run), and
    this process set up for them; stopped at the end."""
    where = directory.relative_to(ROOT)
    (directory / "bench.sqlite3").unlink(missing_ok=True)
    sh(f"bin/services up --dir {where} --nodes {nodes} --port-base {port_base}")
    sh(f"bin/services reset --dir {where}")
    try:
        load_env(directory)
        yield
    finally:
        sh(f"bin/services down --dir {where}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--exits", type=int, default=6)
    args = parser.parse_args()
    with services(DIR, nodes=2, port_base=26900):
        run(args.rounds, args.exits)


def setup_nodes() -> tuple[Any, list[Any], dict[str, Any]]:
    """Django set up and migrated, pod eru and every node of the services registered: (pod, nodes,
    their docker clients by name)."""
    import django

    django.setup()
    from django.core.management import call_command

    from clusters import selectors, services
    from clusters.models import Node

    call_command("migrate", verbosity=0)
    pod = services.pod_add(actor=services.SYSTEM, name="eru")
    tls = {
        part: (Path(os.environ["ERU_TLS_DIR"]) / f"{part}.pem").read_text() for part in ("ca", "cert", "key")
    }
    for item in os.environ["ERU_NODES"].split():
        name, _, endpoint = item.partition("=")
        services.node_add(actor=services.SYSTEM, pod=pod, name=name, endpoint=endpoint, **tls)
    nodes = list(Node.objects.select_related("pod").order_by("name"))
    return pod, nodes, {n.name: selectors.node_client(n) for n in nodes}


def grow(
    pod: Any, nodes: list[Any], clients: dict[str, Any], total: int, command: list[str] | None = None
) -> None:
    """Containers (and their rows) up to `total`, spread over the nodes: running `command` (sleep),
    no network."""
    from clusters.models import Workload

    have = Workload.objects.count()
    todo = [(i, nodes[i % len(nodes)]) for i in range(have, total)]

    def make(item: tuple[int, Any]) -> Workload:
        i, node = item
        name = f"bench_e_{i:06d}"
        labels = {"ERU": "1", "eru.nodename": node.name}
        c = clients[node.name].containers.create(
            IMAGE, command or ["sleep", "3600"], name=name, labels=labels, network_mode="none"
        )
        c.start()
        row = Workload(name=name, pod=pod, node=node, app="bench", entrypoint="e", image=IMAGE)
        row.container_id, row.state, row.status = c.id, Workload.State.RUNNING, Workload.Status.RUNNING
        return row

    with ThreadPoolExecutor(8) as pool:
        Workload.objects.bulk_create(list(pool.map(make, todo)))


def run(rounds: int, exits: int) -> None:
    pod, nodes, clients = setup_nodes()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.utils import timezone
    from rest_framework.test import APIClient

    from agents import sweep
    from clusters.models import Workload

    lister = ThreadPoolExecutor(len(nodes))  # kept from call to call, as the sweep keeps its threads

    def raw_lists() -> float:
        t0 = time.perf_counter()
        list(
            lister.map(lambda n: clients[n.name].api.containers(all=True, filters={"label": "ERU=1"}), nodes)
        )
        return time.perf_counter() - t0

    def one_sweep(fresh: bool = False) -> float:
        if fresh:  # as after a change to the node's rows: they are read, every container compared
            sweep._known.clear()
        t0 = time.perf_counter()
        looks = sweep.sweep(nodes)
        elapsed = time.perf_counter() - t0
        assert all(lk.seen is not None for lk in looks)
        return elapsed

    print(f"one sweep against the raw list calls (2 nodes, in parallel), median of {rounds} rounds")
    print("  fresh: the rows are read and every container compared (after a change to the rows)")
    print("  steady: nothing changed since the last sweep (the usual case, and the target)")
    head = f"{'containers':>10} {'raw list':>10} {'fresh':>10} {'ratio':>7} {'steady':>10} {'ratio':>7}"
    print(f"{head} {'steady/container':>17}")
    previous: tuple[int, float] | None = None
    for total in SIZES:
        grow(pod, nodes, clients, total)
        one_sweep()  # the first look records what is new
        raw, fresh, swept = [], [], []
        for _ in range(rounds):
            raw.append(raw_lists())
            fresh.append(one_sweep(fresh=True))
        # The rows as they are a while after a change (a node's rows changed within sweep.SETTLE are
        # read at every sweep, in case a late commit hides behind the aggregate).
        Workload.objects.update(updated_at=timezone.now() - timedelta(minutes=1))
        one_sweep()
        for _ in range(rounds):
            swept.append(one_sweep())
        r, f, s = statistics.median(raw), statistics.median(fresh), statistics.median(swept)
        added = (
            f"  +{(s - previous[1]) / (total - previous[0]) * 1e6:.0f} µs per container added"
            if previous
            else ""
        )
        per = s / total * 1e6
        line = f"{total:>10} {r * 1000:>8.1f}ms {f * 1000:>8.1f}ms {f / r:>6.2f}x"
        print(f"{line} {s * 1000:>8.1f}ms {s / r:>6.2f}x {per:>14.0f} µs{added}")
        previous = (total, s)
    print("target: steady ratio at most 1.2x; linear growth: about the same cost for each container added")

    interval = settings.ERU_SWEEP_INTERVAL
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            sweep.sweep(nodes)
            stop.wait(interval)

    threading.Thread(target=beat, daemon=True).start()
    api = APIClient()
    api.force_authenticate(User.objects.create_superuser("bench", password="bench-password-1"))
    victims = random.sample(list(Workload.objects.filter(status=Workload.Status.RUNNING)), exits)
    delays = []
    for w in victims:
        time.sleep(random.uniform(0, interval))
        clients[w.node.name].containers.get(w.container_id).kill()
        t0 = time.perf_counter()
        while api.get(f"/api/workloads/{w.pk}/").json()["status"] != "exited":
            time.sleep(0.05)
        delays.append(time.perf_counter() - t0)
    stop.set()
    median, worst = statistics.median(delays), max(delays)
    what = f"exit -> API shows it, sweep every {interval:g} s, {exits} exits"
    print(f"{what}: median {median:.2f} s, max {worst:.2f} s")


if __name__ == "__main__":
    main()
