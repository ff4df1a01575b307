"""The node agent: (1) the time from a container's exit to the API showing it, with the agent, over 20
exits (target: p95 under 1 s); (2) SetWorkloadsStatus throughput from one agent's client against the
core's gRPC door, beside a bare grpcio echo server with the same messages, same run (target: at least
0.5x); (3) the agent's own CPU use per 100 containers, steady and with health checks.

Usage: .venv/bin/python bench/agent.py [--exits 20] [--calls 2000] [--containers 100]
Starts its own services under var/bench-agent (one dockerd node, etcd, Redis; port base 27900) and
stops them at the end. The core's door and selfmon run in this process; the agent is a real
`python -m nodeagent` process on the node's socket."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import IMAGE, ROOT, services  # noqa: E402  (bench/sweep.py)

DIR = ROOT / "var" / "bench-agent"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exits", type=int, default=20)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--containers", type=int, default=100)
    args = parser.parse_args()
    with services(DIR, nodes=1, port_base=27900):
        run(args.exits, args.calls, args.containers)


def one_node() -> tuple[Any, Any, str, str]:
    """Django set up and migrated, pod eru and the services' first node registered: (pod, node, the
    node's agent secret, its docker socket)."""
    import django

    django.setup()
    from django.core.management import call_command

    from clusters import services
    from clusters.models import Node

    call_command("migrate", verbosity=0)
    pod = services.pod_add(actor=services.SYSTEM, name="eru")
    tls = {p: (Path(os.environ["ERU_TLS_DIR"]) / f"{p}.pem").read_text() for p in ("ca", "cert", "key")}
    name, _, endpoint = os.environ["ERU_NODES"].split()[0].partition("=")
    node = services.node_add(actor=services.SYSTEM, pod=pod, name=name, endpoint=endpoint, **tls)
    node = Node.objects.select_related("pod").get(pk=node.pk)
    secret = services.node_secret_rotate(actor=services.SYSTEM, node=node)
    socket = dict(i.split("=", 1) for i in os.environ["ERU_NODE_SOCKETS"].split())[name]
    return pod, node, secret, socket


def run(exits: int, calls: int, containers: int) -> None:
    pod, node, secret, socket = one_node()
    name = node.name
    import grpc
    import psutil
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    from agents import grpc_server
    from agents.selfmon import Selfmon
    from clusters import selectors
    from clusters.models import Node, Workload
    from protocol import core_pb2 as pb
    from protocol import core_pb2_grpc as pb_grpc
    from protocol.client import CoreClient

    server, port = grpc_server.serve("127.0.0.1:0", workers=8)
    selfmon = Selfmon(ttl=5, poll=0.5)
    selfmon.start()
    docker = selectors.node_client(node)

    def make(i: int, command: list[str], labels: dict[str, str] | None = None) -> Workload:
        w_name = f"bench_e_{i:06d}"
        c = docker.containers.create(
            IMAGE, command, name=w_name, labels={"ERU": "1", "eru.nodename": name, **(labels or {})}
        )
        c.start()
        c.reload()
        row = Workload(name=w_name, pod=pod, node=node, app="bench", entrypoint="e", image=IMAGE)
        row.container_id, row.state, row.status = c.id, Workload.State.RUNNING, Workload.Status.RUNNING
        return row

    secret_file = DIR / "agent.secret"
    secret_file.write_text(secret)
    argv = [
        sys.executable, "-m", "nodeagent", "--core", f"127.0.0.1:{port}", "--hostname", name,
        "--password-file", str(secret_file), "--docker-endpoint", socket, "--run-dir", str(DIR / "run"),
        "--heartbeat-interval", "5", "--healthcheck-interval", "10", "--healthcheck-timeout", "1",
    ]  # fmt: skip
    log = (DIR / "agent.log").open("ab")
    agent = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        # --- (1) exit -> API ------------------------------------------------------------------
        with ThreadPoolExecutor(8) as pool:
            rows = list(pool.map(lambda i: make(i, ["sleep", "3600"]), range(exits)))
        Workload.objects.bulk_create(rows)
        while not Node.objects.get(pk=node.pk).agent:
            time.sleep(0.05)
        time.sleep(1)
        api = APIClient()
        api.force_authenticate(User.objects.create_superuser("bench", password="bench-password-1"))
        delays = []
        for w in Workload.objects.all():
            docker.containers.get(w.container_id).kill()
            t0 = time.perf_counter()
            while api.get(f"/api/workloads/{w.pk}/").json()["status"] != "exited":
                time.sleep(0.005)
            delays.append(time.perf_counter() - t0)
        delays.sort()
        p95 = delays[max(0, int(round(0.95 * len(delays))) - 1)]
        print(f"exit -> API shows it, with the agent, {len(delays)} exits:")
        print(
            f"  median {statistics.median(delays) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms,"
            f" max {delays[-1] * 1000:.0f} ms"
        )
        print("  target: p95 under 1 s")

        # --- (2) SetWorkloadsStatus throughput --------------------------------------------------
        def status_of(w: Workload) -> pb.WorkloadStatus:
            code = docker.containers.get(w.container_id).attrs["State"]["ExitCode"]
            return pb.WorkloadStatus(
                id=w.container_id, running=False, healthy=False, appname="bench", entrypoint="e",
                nodename=name, status="exited", exit_code=code, restart_count=0, name=w.name,
            )  # fmt: skip

        statuses = [status_of(w) for w in Workload.objects.all()]

        class Echo(pb_grpc.CoreRPCServicer):
            def SetWorkloadsStatus(
                self, request: pb.SetWorkloadsStatusOptions, context: object
            ) -> pb.WorkloadsStatus:
                return pb.WorkloadsStatus(status=request.status)

        echo = grpc.server(ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_CoreRPCServicer_to_server(Echo(), echo)
        echo_port = echo.add_insecure_port("127.0.0.1:0")
        echo.start()

        def rate(address: str, batch: list[pb.WorkloadStatus], change: bool = False) -> float:
            """Statuses per second, one call after the other, numbered as one agent's sender sends
            them; `change`: every status a new exit code (a row write each)."""
            client = CoreClient([address], f"node.{name}", secret)

            def send() -> None:
                for m in batch:
                    m.seq += 1
                    if change:
                        m.exit_code = 1 - m.exit_code
                client.set_workloads_status(batch, nodename=name)

            for _ in range(50):
                send()
            n = max(calls // len(batch) // (10 if change else 1), 50)
            t0 = time.perf_counter()
            for _ in range(n):
                send()
            elapsed = time.perf_counter() - t0
            client.close()
            return n * len(batch) / elapsed

        print("SetWorkloadsStatus from one agent's client, statuses per second, median of 3, core's door")
        print("against a bare grpcio echo server; re-sent: unchanged (an agent's cache_ttl and health")
        print("re-sends), changed: each status a new exit code, so a row write each:")
        for what, batch, change in (
            ("re-sent", [statuses[0]], False),
            ("re-sent", statuses, False),
            ("changed", [statuses[0]], True),
            ("changed", statuses, True),
        ):
            ours, bare = [], []
            for _ in range(3):
                bare.append(rate(f"127.0.0.1:{echo_port}", batch, change))
                ours.append(rate(f"127.0.0.1:{port}", batch, change))
            o, b = statistics.median(ours), statistics.median(bare)
            print(f"  {what}, {len(batch):>2} per call: door {o:>6.0f}/s, echo {b:>6.0f}/s: {o / b:.2f}x")
        print("  target: at least 0.5x (the agent's usual traffic: re-sent)")
        echo.stop(0)

        # --- (3) the agent's CPU per 100 containers ---------------------------------------------
        check = '{"HealthCheck":{"TCPPorts":["8080"],"HTTPPort":"","HTTPURL":"/","HTTPCode":0}}'
        with ThreadPoolExecutor(8) as pool:
            more = list(
                pool.map(
                    lambda i: make(i, ["sh", "-c", "httpd -p 8080 -h /tmp; sleep 3600"], {"ERU_META": check}),
                    range(exits, exits + containers),
                )
            )
        Workload.objects.bulk_create(more)
        proc = psutil.Process(agent.pid)
        time.sleep(12)  # the start events and their re-checks settle
        window = 30.0
        before = proc.cpu_times()
        time.sleep(window)
        after = proc.cpu_times()
        used = (after.user - before.user) + (after.system - before.system)
        per100 = used / window * 100 * (100 / containers)
        memory = proc.memory_info().rss / (1 << 20)
        print(
            f"agent CPU, {containers} running containers with a tcp health check every 10 s, {window:.0f} s:"
        )
        print(f"  {per100:.2f}% of one core per 100 containers; RSS {memory:.0f} MiB")
    finally:
        agent.terminate()
        agent.wait(10)
        selfmon.stop()
        server.stop(0)


if __name__ == "__main__":
    main()
