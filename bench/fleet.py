"""The deploy path at fleet scale: a pod of 10,000 simulated nodes (rows, and real heartbeat keys in a
real etcd; no dockerd behind them, so creation tasks are counted at a real Redis broker that no worker
reads, not run), quotas and audit on, on SQLite and on PostgreSQL. Every deploy is timed in two
windows — the service call (services.deployment_create) until its transaction commits, and until its
last task message is handed to the broker — printed beside the scheduling engine alone (deploy_infos,
plan and allocate of the touched nodes) on the same rows, measured just before it in the same run.

Cases (targets on the window until commit): a 1-instance deploy (within 3× the engine, at most 50 ms),
1,000 instances (within 2×, at most 300 ms), 10,000 instances over 10,000 nodes (at most 1 s; the
per-deploy cap of 1,000 instances is lifted in this process for it); then 16 processes calling the
deploy service for 1-instance deploys, each for its own team and quota (at least 200 deploys/s on
PostgreSQL, 0 over-commits counted after), and the same with all 16 in one team (one quota row: the
point of contention, printed). Last, etcd's writes per second at steady state while the 10,000 nodes
heartbeat through clusters.etcd.heartbeat() (issue 16 part 3).

Usage: .venv/bin/python bench/fleet.py [--nodes 10000] [--db sqlite,postgres] [--rounds 9]
       [--seconds 5] [--procs 16] [--no-concurrency] [--no-heartbeats] [--keep]
Starts its own services (etcd, Redis, PostgreSQL; one dockerd that it does not use) under
var/bench-fleet on ports 25632-25691 and stops them at the end (--keep leaves them up). Exits 1 when a
target is missed."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path and would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
DIR = ROOT / "var" / "bench-fleet"
PORT_BASE = 25600  # etcd +90, Redis +79, PostgreSQL +32, the unused dockerd +61 (embedded.config)
PREFIX = "/bench-fleet"
POD = "fleet"
PG_DB = "eru_fleet"
GIB, MIB = 1 << 30, 1 << 20
CORES = 8
TEAMS = 16
REQUEST = {"cpu_request": 0.1, "cpu_limit": 0.1, "memory_request": "64M", "memory_limit": "64M"}
QUOTA = {"cpu": 1e6, "memory": 1 << 50, "workloads": 10_000_000}  # on: checked, counted, never binding


# --- the environment (parent and children) ---------------------------------------------------------
def services_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (DIR / "env").read_text().splitlines():
        if line.startswith("export "):
            k, _, v = line[7:].partition("=")
            env[k] = v.strip().strip('"').strip("'")
    return env


def configure(backend: str) -> None:
    """This process's settings (before django.setup): the services' etcd, a Redis database of its own
    as the broker, the bench's database."""
    env = services_env()
    os.environ.update(
        ERU_ETCD_ENDPOINTS=env["ERU_ETCD_ENDPOINTS"],
        ERU_ETCD_PREFIX=PREFIX,
        ERU_REDIS_URL=env["ERU_REDIS_URL"].rsplit("/", 1)[0] + "/7",
        ERU_VAR_DIR=str(DIR),
        ERU_LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="eru_site.settings",
    )
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    if backend == "postgres":
        os.environ["ERU_DATABASE"] = env["ERU_PG_URL"].rsplit("/", 1)[0] + "/" + PG_DB
    else:
        os.environ.pop("ERU_DATABASE", None)
        os.environ["ERU_DB"] = str(DIR / "fleet.sqlite3")


def fresh_database(backend: str) -> None:
    if backend == "postgres":
        import psycopg

        url = services_env()["ERU_PG_URL"].rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DB}")
    else:
        for leftover in DIR.glob("fleet.sqlite3*"):
            leftover.unlink()


# --- the fleet ---------------------------------------------------------------------------------------
def populate(nodes: int) -> None:
    """Migrate, then the pod, its nodes, their heartbeat keys (one lease), the users, teams, quotas."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from clusters import etcd, services
    from clusters.models import Node, Pod, PodMember, Team, TeamMember

    call_command("migrate", verbosity=0, interactive=False)
    pod = Pod.objects.create(name=POD, favor=Pod.Favor.MEMORY)
    rows = [
        Node(
            name=f"fleet-{i:05d}",
            pod=pod,
            endpoint=f"tcp://10.{i // 62500}.{i // 250 % 250}.{i % 250}:2376",
            cpu_map={str(c): 100 for c in range(CORES)},
            memory=32 * GIB,
            labels={"zone": f"z{i % 4}", "disk": "ssd"},
            bypass=i % 500 == 499,  # a few set down
        )
        for i in range(nodes)
    ]
    Node.objects.bulk_create(rows, batch_size=1000)
    c = etcd.client()
    c.delete_prefix(PREFIX)
    lease = c.lease(3600)
    ops = [
        c.transactions.put(
            etcd.node_status_key(r.name),
            etcd.dumps({"Nodename": r.name, "Podname": POD, "Alive": True, "Error": None}),
            lease=lease,
        )
        for i, r in enumerate(rows)
        if i % 1000 != 999  # a few without a heartbeat
    ]
    for i in range(0, len(ops), etcd.TXN_MAX_OPS):
        c.transaction(compare=[], success=ops[i : i + etcd.TXN_MAX_OPS], failure=[])
    shared = Team.objects.create(name="shared")
    services.quota_set(actor=services.SYSTEM, pod=pod, team=shared, **QUOTA)
    for i in range(TEAMS):
        user = User.objects.create_user(f"deployer{i}", password="x")
        PodMember.objects.create(pod=pod, user=user, role=PodMember.Role.DEPLOYER)
        team = Team.objects.create(name=f"team{i}")
        TeamMember.objects.create(team=team, user=user)
        TeamMember.objects.create(team=shared, user=user)
        services.quota_set(actor=services.SYSTEM, pod=pod, team=team, **QUOTA)


def deploy_data(count: int, team: str, app: str = "fleet") -> dict[str, Any]:
    return {
        "app": app,
        "entrypoint": "web",
        "image": "eru/busybox:latest",
        "command": ["sleep", "3600"],
        "count": count,
        "team": team,
        **REQUEST,
    }


class Windows:
    """Times of one service call: when its transaction committed, when its last task message was
    handed to the broker (send_task returned)."""

    def __init__(self) -> None:
        from celery import current_app
        from django.db import connection

        self.commit = self.sent = 0.0
        self.messages = 0
        app = current_app._get_current_object()
        send = app.send_task

        def timed_send(*args: Any, **kwargs: Any) -> Any:
            result = send(*args, **kwargs)
            self.sent = time.perf_counter()
            self.messages += 1
            return result

        app.send_task = timed_send  # type: ignore[method-assign]
        run_hooks = connection.run_and_clear_commit_hooks

        def timed_hooks() -> None:
            self.commit = time.perf_counter()
            run_hooks()

        connection.run_and_clear_commit_hooks = timed_hooks  # type: ignore[method-assign]

    def reset(self) -> None:
        self.commit = self.sent = 0.0
        self.messages = 0


def broker_messages() -> int:
    """Messages waiting in the broker's queues (no worker reads them); emptied after counting."""
    import redis
    from django.conf import settings

    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    n = sum(int(r.llen(q)) for q in ("celery", "lambda", "heartbeat"))  # type: ignore[arg-type]
    r.flushdb()
    return n


def engine_alone(spec: Any, counts: dict[str, int]) -> float:
    """The scheduling engine on the rows the deploy is about to see: the pod's available nodes'
    resources (read untimed), then deploy_infos, the strategy's plan and allocate on each touched node."""
    import scheduling
    from clusters import etcd, selectors
    from clusters.models import Node

    alive = etcd.alive_nodes(strict=True)
    nodes = [n for n in Node.objects.filter(pod__name=POD, bypass=False) if n.name in alive]
    resources = [selectors.node_resources(n) for n in nodes]
    by_name = {r.name: r for r in resources}
    r = spec.request
    t0 = time.perf_counter()
    infos, total = scheduling.deploy_infos(resources, spec.resources, counts)
    plan = scheduling.plan(r.strategy, infos, r.count, total, r.nodes_limit)
    for name, n in plan.items():
        if n:
            scheduling.allocate(by_name[name], spec.resources, n)
    return time.perf_counter() - t0


def app_counts(app: str) -> dict[str, int]:
    from django.db.models import Count

    from clusters.models import Workload

    rows = Workload.objects.filter(Workload.holding(), app=app, pod__name=POD)
    return dict(rows.values_list("node__name").annotate(n=Count("id")).order_by())


def overcommits() -> dict[str, int]:
    """What must be 0 after any number of racing deploys: nodes above capacity, nodes whose recorded
    usage is not the sum of the rows holding an allocation there (a leaked or lost allocation), teams
    above their quota, deployments whose rows are not their plan."""
    from django.db.models import Count, F, Sum

    from clusters.models import Deployment, Node, Quota, Workload

    over = Node.objects.filter(used_memory__gt=F("memory")).count()
    held = {
        node: (cpu or 0.0, memory or 0, n)
        for node, cpu, memory, n in Workload.objects.filter(Workload.holding())
        .order_by()
        .values_list("node_id")
        .annotate(Sum("cpu_request"), Sum("memory_request"), Count("id"))
    }
    drift = 0
    for pk, used_cpu, used_memory in Node.objects.values_list("pk", "used_cpu", "used_memory"):
        cpu, memory, _ = held.get(pk, (0.0, 0, 0))
        drift += abs(used_cpu - cpu) > 1e-6 or used_memory != memory
    teams = 0
    for q in Quota.objects.all():
        use = Workload.objects.filter(Workload.holding(), team_id=q.team_id, pod_id=q.pod_id).aggregate(
            n=Count("id"), memory=Sum("memory_request")
        )
        teams += (q.workloads is not None and use["n"] > q.workloads) or (
            q.memory is not None and (use["memory"] or 0) > q.memory
        )
    plans = sum(
        1
        for d in Deployment.objects.annotate(n=Count("workloads"))
        if d.n != sum(d.plan.values()) or d.total != d.n
    )
    return {"over_capacity": over, "usage_drift": drift, "over_quota": teams, "plan_mismatch": plans}


def single(backend: str, rounds: int) -> list[dict[str, Any]]:
    """The three sizes, `rounds` times each (fewer for the big ones), engine first then service."""
    from django.contrib.auth.models import User

    import schema
    import schema.deploy
    from clusters import services
    from clusters.models import Pod

    pod = Pod.objects.get(name=POD)
    actor = services.Actor(user=User.objects.get(username="deployer0"), via="api")
    windows = Windows()
    schema.deploy.MAX_DEPLOY_COUNT = schema.MAX_DEPLOY_COUNT = 10_000  # type: ignore[misc]
    results = []
    for label, count, n_rounds, ratio, ceiling in (
        ("1 instance", 1, rounds, 3.0, 0.050),
        ("1,000 instances", 1000, max(3, rounds // 2), 2.0, 0.300),
        ("10,000 instances", 10_000, max(3, rounds // 3), None, 1.0),
    ):
        engine, commit, sent, total, messages, touched = [], [], [], [], [], []
        for i in range(n_rounds + 1):  # the first round warms caches and is not counted
            spec = services.deployment_validate(pod=pod, data=deploy_data(count, "team0"))
            eng = engine_alone(spec, app_counts("fleet"))
            broker_messages()
            windows.reset()
            t0 = time.perf_counter()
            d = services.deployment_create(actor=actor, spec=spec)
            t_end = time.perf_counter()
            if i == 0:
                broker_messages()
                continue
            engine.append(eng)
            commit.append(windows.commit - t0)
            sent.append((windows.sent or t_end) - t0)
            total.append(t_end - t0)
            messages.append(broker_messages())
            touched.append(sum(1 for n in d.plan.values() if n))
        results.append(
            {
                "backend": backend,
                "case": label,
                "rounds": n_rounds,
                "engine": statistics.median(engine),
                "commit": statistics.median(commit),
                "sent": statistics.median(sent),
                "returned": statistics.median(total),
                "messages": statistics.median(messages),
                "nodes": statistics.median(touched),
                "ratio_target": ratio,
                "ceiling": ceiling,
            }
        )
        print(f"  [{backend}] {label}: done", file=sys.stderr, flush=True)
    return results


# --- many processes ---------------------------------------------------------------------------------
def racer(backend: str, index: int, team: str, seconds: float, barrier: Any) -> dict[str, Any]:
    """One of the processes: 1-instance deploys for `seconds` as deployer<index> on `team`."""
    configure(backend)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.exceptions import ValidationError

    from clusters import services
    from clusters.models import Pod

    pod = Pod.objects.get(name=POD)
    actor = services.Actor(user=User.objects.get(username=f"deployer{index}"), via="api")
    data = deploy_data(1, team, app=f"race{index}")
    services.deployment_create(actor=actor, spec=services.deployment_validate(pod=pod, data=data))  # warm
    granted = refused = 0
    errors: list[str] = []
    latencies = []
    barrier.wait(timeout=120)
    services_before = service_cpu() if index == 0 else {}
    cpu_start = time.process_time()
    t_start = time.perf_counter()
    deadline = t_start + seconds
    while (now := time.perf_counter()) < deadline:
        try:
            spec = services.deployment_validate(pod=pod, data=data)
            services.deployment_create(actor=actor, spec=spec)
            granted += 1
        except ValidationError as exc:
            refused += 1
            errors.append("; ".join(exc.messages)[:200])
        latencies.append(time.perf_counter() - now)
    cpu = time.process_time() - cpu_start
    services_after = service_cpu() if index == 0 else {}
    return {
        "cpu": cpu,
        "services_before": services_before,
        "services_after": services_after,
        "granted": granted,
        "refused": refused,
        "errors": errors[:3],
        "elapsed": time.perf_counter() - t_start,
        "latencies": latencies,
    }


def service_cpu() -> dict[str, float]:
    """CPU seconds used so far by the services' processes (PostgreSQL's backends included), by name."""
    import psutil

    names = {"postgres": "postgres", "etcd": "etcd", "redis-server": "redis"}
    found = dict.fromkeys(names.values(), 0.0)
    for proc in psutil.process_iter(["name", "cpu_times"]):
        name = names.get(proc.info["name"] or "")
        times = proc.info["cpu_times"]
        where = " ".join(_cmdline(proc)) + " " + _cwd(proc)  # PostgreSQL's backends: their cwd
        if name and times is not None and (str(DIR) in where or f"-{PORT_BASE}" in where):
            found[name] += times.user + times.system
    return found


def _cmdline(proc: Any) -> list[str]:
    try:
        return list(proc.cmdline())
    except Exception:
        return []


def _cwd(proc: Any) -> str:
    try:
        return str(proc.cwd())
    except Exception:
        return ""


def concurrent(backend: str, procs: int, seconds: float, shared: bool) -> dict[str, Any]:
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(procs)
    jobs = [(backend, i, "shared" if shared else f"team{i}", seconds, barrier) for i in range(procs)]
    with ctx.Pool(procs) as pool:
        found = pool.starmap(racer, jobs)
    broker_messages()
    granted = sum(f["granted"] for f in found)
    cpu = {"deployers": sum(f["cpu"] for f in found)}
    before, after = found[0]["services_before"], found[0]["services_after"]
    cpu.update({k: after[k] - before[k] for k in after})
    elapsed = max(f["elapsed"] for f in found)
    latencies = sorted(x for f in found for x in f["latencies"])
    return {
        "backend": backend,
        "teams": "one team" if shared else f"{procs} teams",
        "procs": procs,
        "granted": granted,
        "refused": sum(f["refused"] for f in found),
        "errors": [e for f in found for e in f["errors"]][:3],
        "rate": granted / elapsed,
        "p50": latencies[len(latencies) // 2] if latencies else 0.0,
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "cpu_per_deploy": {k: v / max(granted, 1) for k, v in cpu.items()},
        "overcommits": overcommits(),
    }


# --- heartbeats --------------------------------------------------------------------------------------
def etcd_metrics() -> dict[str, float]:
    endpoint = services_env()["ERU_ETCD_ENDPOINTS"].split(",")[0]
    text = urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5).read().decode()
    wanted = {
        "etcd_server_proposals_committed_total": "proposals",
        "etcd_mvcc_put_total": "puts",
        "etcd_mvcc_txn_total": "txns",
        "etcd_disk_wal_write_bytes_total": "wal_bytes",
        "etcd_debugging_lease_renewed_total": "renewals",
        "etcd_debugging_lease_granted_total": "grants",
    }
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            found[wanted[name]] = float(value)
    return found


def heartbeats(interval: float, seconds: float) -> dict[str, Any]:
    """Every node through clusters.etcd.heartbeat() (as agents and the sweep call it) once to take
    its own lease, then paced at one per node per `interval` for `seconds`: etcd's counters per second."""
    from clusters import etcd
    from clusters.models import Node

    names = list(Node.objects.filter(pod__name=POD).values_list("name", flat=True))
    ttl = int(3 * interval)
    pool = ThreadPoolExecutor(32)  # noqa: SIM115 — shut down below
    t0 = time.perf_counter()
    list(pool.map(lambda n: etcd.heartbeat(n, POD, ttl), names))
    first = time.perf_counter() - t0
    done = 0
    lock = threading.Lock()

    def beat(name: str, due: float) -> None:
        nonlocal done
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        etcd.heartbeat(name, POD, ttl)
        with lock:
            done += 1

    def paced(duration: float) -> float:
        """One heartbeat per node per `interval`, for `duration` seconds: the time it took."""
        start = time.perf_counter()
        step = interval / len(names)
        jobs = [(names[i % len(names)], start + i * step) for i in range(int(duration / step))]
        list(pool.map(lambda job: beat(*job), jobs))
        return time.perf_counter() - start

    paced(interval)  # a whole round first: the leases the first round let expire are taken again
    before, done = etcd_metrics(), 0
    elapsed = paced(seconds)
    after = etcd_metrics()
    pool.shutdown()
    rates = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / elapsed for k in after}
    return {"nodes": len(names), "interval": interval, "first": first, "beats": done / elapsed, **rates}


# --- the report -------------------------------------------------------------------------------------
def child(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    configure(backend)
    import django

    django.setup()
    populate(args.nodes)
    out: dict[str, Any] = {"single": single(backend, args.rounds), "concurrent": []}
    if not args.no_concurrency:
        for shared in (False, True):
            out["concurrent"].append(concurrent(backend, args.procs, args.seconds, shared))
            print(
                f"  [{backend}] concurrency ({'one team' if shared else 'own teams'}): done", file=sys.stderr
            )
    if not args.no_heartbeats and backend == args.db.split(",")[0]:
        out["heartbeats"] = heartbeats(20.0, args.seconds * 2)  # a lease of 60 s: the first round fits
    return out


def report(found: dict[str, dict[str, Any]], args: argparse.Namespace) -> bool:
    ok = True
    print(f"fleet: one pod of {args.nodes} nodes (rows + etcd heartbeat keys), quotas and audit on")
    print("windows: until commit (targets) | until the last task message is handed to Redis | returned")
    head = f"{'db':<9}{'case':<18}{'engine':>9}{'commit':>9}{'×eng':>7}{'sent':>9}{'return':>9}{'msgs':>6}"
    print(head + f"{'nodes':>7}  target")
    for backend, out in found.items():
        for r in out["single"]:
            ratio = r["commit"] / r["engine"]
            met = r["commit"] <= r["ceiling"] and (r["ratio_target"] is None or ratio <= r["ratio_target"])
            ok &= met
            target = (
                f"≤ {r['ratio_target']:g}× and " if r["ratio_target"] else ""
            ) + f"≤ {r['ceiling'] * 1000:g} ms"
            print(
                f"{backend:<9}{r['case']:<18}{r['engine'] * 1000:>7.1f}ms{r['commit'] * 1000:>7.1f}ms"
                f"{ratio:>6.2f}×{r['sent'] * 1000:>7.1f}ms{r['returned'] * 1000:>7.1f}ms{r['messages']:>6.0f}"
                f"{r['nodes']:>7.0f}  {target}: {'met' if met else 'NOT met'}"
            )
    for backend, out in found.items():
        for c in out["concurrent"]:
            bad = sum(c["overcommits"].values())
            target = backend == "postgres" and c["teams"] != "one team"
            met = bad == 0 and (not target or c["rate"] >= 200)
            ok &= met
            print(
                f"{backend:<9}{c['procs']} processes, {c['teams']:<9}: {c['rate']:7.1f} deploys/s "
                f"({c['granted']} granted, {c['refused']} refused; p50 {c['p50'] * 1000:.1f} ms, "
                f"p99 {c['p99'] * 1000:.1f} ms), over-commits {c['overcommits']}; CPU per deploy "
                + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in c["cpu_per_deploy"].items())
                + (f" — target ≥ 200/s, 0 over-commits: {'met' if met else 'NOT met'}" if target else "")
                + (f" errors: {c['errors']}" if c["errors"] else "")
            )
        if "heartbeats" in out:
            h = out["heartbeats"]
            print(
                f"heartbeats [{backend}'s run]: {h['nodes']} nodes, one each per {h['interval']:g} s "
                f"(first round, a lease each: {h['first']:.1f} s); steady: {h['beats']:.0f} heartbeats/s → "
                f"etcd {h.get('proposals', 0):.1f} raft proposals/s, {h.get('puts', 0):.1f} puts/s, "
                f"{h.get('txns', 0):.1f} txns/s, {h.get('wal_bytes', 0) / 1024:.1f} KiB/s of WAL, "
                f"{h.get('renewals', 0):.0f} lease renewals/s"
            )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--procs", type=int, default=TEAMS)
    parser.add_argument("--no-concurrency", action="store_true")
    parser.add_argument("--no-heartbeats", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the services up")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one backend, in a process of its own (settings are read once per process)
        print(json.dumps(child(args, args.child)))
        return
    here = str(DIR.relative_to(ROOT))
    subprocess.run(
        ["bin/services", "up", "--dir", here, "--nodes", "1", "--port-base", str(PORT_BASE), "--postgres"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    found: dict[str, dict[str, Any]] = {}
    try:
        for backend in args.db.split(","):
            fresh_database(backend)
            command = [sys.executable, __file__, "--child", backend, *sys.argv[1:]]
            out = subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
            found[backend] = json.loads(out.strip().splitlines()[-1])
    finally:
        if not args.keep:
            subprocess.run(["bin/services", "down", "--dir", here], cwd=ROOT, check=False)
    sys.exit(0 if report(found, args) else 1)


if __name__ == "__main__":
    main()
