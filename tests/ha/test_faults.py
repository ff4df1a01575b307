"""High availability on one machine (issue 16, part 4), against the cluster of `bin/eru --ha up`.

During a 50-container deploy, one of each is killed with SIGKILL (a crash, no cleanup): a web
instance, the gRPC core leading selfmon, a Celery worker, the beat launcher running beat, the etcd
member leading raft, and Redis. A stop of another workload is asked while they are down. 30 s later
each is started again: by the mode's supervisor when it runs (bin/test starts the mode with
ERU_HA_RESTART_DELAY=30), else by the test, through the same code as `bin/eru --ha up`. Within 60 s
after the last restart: the deploy is done with 50 workloads, each container exists exactly once on
the nodes, every node's usage equals the sum of the workloads holding an allocation on it, the drift
between the database and etcd is 0, the stop was carried out, and every node is up (its agent
reported through the core that stayed). Meanwhile the other beat launcher and the other core took
the lead, and celery beat never ran twice at once.

Runs only with ERU_HA_TEST=1 (bin/test's HA tier sets it, after `bin/eru --ha up`): the test kills
processes of the cluster of var/ha-cluster, which must not happen by accident in another pass."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest
import requests

from embedded import clients, ha
from embedded.config import ROOT
from embedded.procs import Daemon, strays, wait_gone

pytestmark = pytest.mark.ha

COUNT = 50
FAULT_WINDOW = 30.0  # s between the kills and the restarts
SETTLE = 60.0  # s after the last restart for everything to be right
BASE = f"http://127.0.0.1:{ha.LB_PORT}"


@dataclass
class HA:
    config: ha.HAConfig
    env: dict[str, str]
    cluster: ha.HACluster
    apps: dict[str, Daemon]
    token: str = ""
    supervised: bool = False  # the mode's supervisor runs: it restarts what goes down, not the test
    timings: dict[str, float] = field(default_factory=dict)

    def process(self, name: str) -> Any:
        return self.apps[name] if name in self.apps else self.cluster.get(name)

    def api(self, method: str, path: str, body: Any = None, *, until: float = 0.0) -> tuple[int, Any]:
        """One API call through the load balancer; with until, retried on a connection error or a 5xx
        until that monotonic time."""
        headers = {"Authorization": f"Token {self.token}"}
        while True:
            try:
                r = requests.request(method, BASE + path, json=body, headers=headers, timeout=10)
                if r.status_code < 500 or time.monotonic() >= until:
                    try:
                        return r.status_code, (r.json() if r.content else None)
                    except ValueError:
                        return r.status_code, {"text": r.text[:500]}
            except requests.RequestException:
                if time.monotonic() >= until:
                    raise
            time.sleep(0.5)

    def probe(self, app: str, control: int) -> dict[str, Any]:
        out = subprocess.run(
            [str(ha.PY), str(ROOT / "tests" / "ha" / "probe.py"), app, str(control)],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if out.returncode != 0:
            return {"error": out.stderr[-2000:]}
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


@pytest.fixture(scope="module")
def cluster() -> Iterator[HA]:
    if os.environ.get("ERU_HA_TEST") != "1":
        pytest.skip("the HA tier runs with ERU_HA_TEST=1 (bin/test's last tier)")
    config = ha.ha_config()
    if not config.env_file.is_file() or not ha.clients_web_answers(ha.LB_PORT):  # the tier started it
        pytest.fail("the HA cluster is not up (bin/eru --ha up): the HA tier cannot pass without it")
    env = ha.load_env(config)
    c = HA(config, env, ha.HACluster(config), {p.name: p for p in ha.apps(config, env)})
    supervisor = ha.Supervisor().process()
    c.supervised = supervisor is not None
    if supervisor is not None:
        argv = supervisor.cmdline()
        delay = float(argv[argv.index("--delay") + 1])
        if delay < FAULT_WINDOW:
            pytest.fail(
                f"the supervisor restarts after {delay:g} s; the faults last {FAULT_WINDOW:g} s: "
                f"start the mode with ERU_HA_RESTART_DELAY={FAULT_WINDOW:g} (or off)"
            )

    def down() -> list[str]:
        return [name for name in [*c.cluster.services, *c.apps] if not c.process(name).is_running()]

    if c.supervised:  # what an earlier run killed may not be back yet
        wait_for("the cluster whole", FAULT_WINDOW + 60, lambda: not down())
    assert not down(), f"not running before the test: {down()}"
    token = subprocess.run(
        [str(ha.PY), str(ROOT / "manage.py"), "eru_token", env["ERU_ADMIN_USER"]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    c.token = token.stdout.strip().splitlines()[-1]
    try:
        yield c
    finally:  # the cluster is whole again, whatever happened
        for name in [] if c.supervised else [*c.cluster.services, *c.apps]:
            if not c.process(name).is_running():
                c.process(name).start()


def wait_for(what: str, timeout: float, check: Callable[[], Any], every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def deploy(c: HA, app: str, count: int) -> int:
    body = {
        "pod": "eru",
        "app": app,
        "entrypoint": "web",
        "image": "eru/busybox:latest",
        "command": ["sleep", "3600"],
        "count": count,
        "cpu_limit": 0.02,
        "memory_limit": "8M",
    }
    code, answer = c.api("POST", "/api/deployments/", body, until=time.monotonic() + 30)
    assert code == 201, answer
    return int(answer["id"])


def deployment(c: HA, pk: int) -> dict[str, Any]:
    code, answer = c.api("GET", f"/api/deployments/{pk}/", until=time.monotonic() + 10)
    assert code == 200, answer
    result: dict[str, Any] = answer
    return result


def remove_earlier_runs(c: HA) -> None:
    """Workloads left by an earlier run of this test (apps ha-test-*), removed through the API (asked
    again each round: one still being created refuses a removal until it runs)."""

    def gone() -> bool:
        _, left = c.api("GET", "/api/workloads/?page_size=1000", until=time.monotonic() + 30)
        ours = [w for w in left["results"] if w["app"].startswith("ha-test-")]
        for w in ours:
            if w["state"] != "removing":
                c.api("DELETE", f"/api/workloads/{w['id']}/", until=time.monotonic() + 30)
        return not ours

    wait_for("earlier runs' workloads removed", 120, gone, every=2.0)


def leaders(c: HA) -> dict[str, str]:
    """Which core leads selfmon, which launcher runs beat, which etcd member leads raft (asked of the
    first member that answers)."""
    found: dict[str, str] = {}
    for client_port, _ in c.config.etcd_ports():
        etcd = clients.etcd_client(client_port, timeout=1.0)
        try:
            selfmon, _ = etcd.get("/eru/selfmon/active")
            beat, _ = etcd.get("/eru/beat/active")
            urls = " ".join(etcd.status().leader.client_urls) + " "
        except Exception:  # noqa: BLE001 — this member is down: the next one
            continue
        finally:
            etcd.close()
        if selfmon:  # "host:pid:…"
            pid = int(selfmon.decode().split(":")[1])
            found["core"] = next((n for n in ("grpc1", "grpc2") if c.apps[n].pid() == pid), "grpc1")
        if beat:  # "beat1@ha-26000"
            found["beat"] = beat.decode().split("@")[0]
        for name, (port, _) in zip(("etcd1", "etcd2", "etcd3"), c.config.etcd_ports(), strict=True):
            if f":{port} " in urls:
                found["etcd"] = name
        return found
    raise AssertionError("no etcd member answers")


def containers(c: HA, app: str) -> dict[str, list[str]]:
    """The app's containers on every node: name -> ids (a name twice, or an id twice, is a duplicate)."""
    found: dict[str, list[str]] = {}
    for i in c.config.node_indices():
        client = docker.DockerClient(base_url=f"unix://{c.config.node(i).socket}", version="1.41", timeout=30)
        try:
            for ct in client.containers.list(all=True, filters={"name": f"{app}_"}):
                found.setdefault(ct.name or "", []).append(ct.id or "")
        finally:
            client.close()
    return found


class BeatCounter(threading.Thread):
    """Counts the celery beat processes of the mode every 0.2 s: never more than one at a time."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.most = 0
        self.samples = 0
        self.halt = threading.Event()

    def run(self) -> None:
        needle = f"-m celery -A eru_site beat --schedule {ha.run_dir()}/"
        while not self.halt.wait(0.2):
            self.most = max(self.most, len(strays(needle)))
            self.samples += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


def container_running(c: HA, container_id: str) -> bool | None:
    for i in c.config.node_indices():
        client = docker.DockerClient(base_url=f"unix://{c.config.node(i).socket}", version="1.41", timeout=30)
        try:
            return bool(client.containers.get(container_id).attrs["State"]["Running"])
        except docker.errors.NotFound:
            continue
        finally:
            client.close()
    return None


def test_a_deploy_survives_one_crash_of_each(cluster: HA) -> None:
    c = cluster
    remove_earlier_runs(c)
    run = uuid.uuid4().hex[:6]
    app, ctl_app = f"ha-test-{run}", f"ha-test-ctl-{run}"

    # The target of the control action asked during the faults: one running workload.
    ctl_deploy = deploy(c, ctl_app, 1)
    wait_for("the control target running", 60, lambda: deployment(c, ctl_deploy)["state"] == "done")
    ctl = deployment(c, ctl_deploy)["workloads"][0]

    who = leaders(c)
    victims = [
        "web1",
        who.get("core", "grpc1"),
        "worker1",
        who.get("beat", "beat1"),
        who.get("etcd", "etcd1"),
    ]
    victims.append("redis")

    beats = BeatCounter()
    beats.start()
    started = time.monotonic()
    pk = deploy(c, app, COUNT)
    # Into the deploy: some containers made, most not yet.
    wait_for("the deploy under way", 30, lambda: deployment(c, pk)["succeeded"] >= 3, every=0.2)
    progress = deployment(c, pk)["succeeded"]
    killed_at = time.monotonic()
    for name in victims:
        proc = c.process(name).process()
        assert proc is not None, name
        proc.send_signal(9)
    wait_gone([p for p in (c.process(name).process() for name in victims) if p is not None], 5)
    c.timings["kills"] = time.monotonic() - killed_at

    # During the faults: a stop, retried while the API answers 5xx or not at all.
    code, answer = c.api("POST", f"/api/workloads/{ctl}/stop/", until=killed_at + FAULT_WINDOW - 2)
    assert code == 202, (code, answer)
    c.timings["stop_accepted_after_kill"] = time.monotonic() - killed_at

    # The other beat launcher and the other core take the lead once the killed ones' leases (beat:
    # 10 s, selfmon: 16 s) run out.
    other_beat = "beat2" if victims[3] == "beat1" else "beat1"
    other_core = "grpc2" if victims[1] == "grpc1" else "grpc1"
    wait_for("beat taken over", ha.BEAT_TTL + 15, lambda: leaders(c).get("beat") == other_beat)
    c.timings["beat_taken_over_after_kill"] = time.monotonic() - killed_at
    wait_for("selfmon taken over", 16 + 15, lambda: leaders(c).get("core") == other_core)
    c.timings["selfmon_taken_over_after_kill"] = time.monotonic() - killed_at

    if c.supervised:  # the mode's restart policy brings them back (bin/test: after 30 s)
        for name in victims:
            wait_for(f"{name} restarted by the supervisor", FAULT_WINDOW + 60, c.process(name).is_running)
        c.timings["restarted_by_supervisor_after"] = time.monotonic() - killed_at
    else:
        time.sleep(max(0.0, killed_at + FAULT_WINDOW - time.monotonic()))
        for name in victims:  # each start waits until it is ready
            c.process(name).start()
    restarted = time.monotonic()
    c.timings["last_restart_after_kill"] = restarted - killed_at

    state: dict[str, Any] = {}

    def all_right() -> bool:
        if state:
            print(f"  {time.monotonic() - restarted:5.1f} s after the restarts: {state}", flush=True)
        d = deployment(c, pk)
        state["deployment"] = {k: d[k] for k in ("state", "succeeded", "failed", "total")}
        if d["state"] != "done" or d["succeeded"] != COUNT:
            return False
        probe = c.probe(app, ctl)
        state["probe"] = {k: v for k, v in probe.items() if k != "workloads"}
        if "error" in probe:
            return False
        rows = probe["workloads"]
        found = containers(c, app)
        state["containers"] = len(found)
        state["duplicates"] = {n: ids for n, ids in found.items() if len(ids) > 1}
        ids = {row[1] for row in rows.values()}
        if len(rows) != COUNT or len(found) != COUNT or state["duplicates"]:
            return False
        if ids != {ids_[0] for ids_ in found.values()}:
            state["mismatch"] = sorted(ids ^ {i[0] for i in found.values()})[:5]
            return False
        for node, u in probe["usage"].items():
            if (u["used_cpu"], u["used_memory"], u["used_cpu_map"]) != (
                u["held_cpu"],
                u["held_memory"],
                u["held_cpu_map"],
            ):
                state["leak"] = node
                return False
        if probe["drift"] != 0:
            return False
        # The agents reported through the core that stayed: no node was lost.
        _, nodes = c.api("GET", "/api/nodes/", until=time.monotonic() + 10)
        listed = nodes["results"] if isinstance(nodes, dict) else nodes
        state["nodes"] = {n["name"]: (n["available"], n["last_error"]) for n in listed}
        if not all(available and not error for available, error in state["nodes"].values()):
            return False
        control = probe["control"]
        running = container_running(c, control["container_id"])
        state["control_running"] = running
        return control["state"] == "stopped" and not control["action"] and running is False

    try:
        wait_for("everything right after the restarts", SETTLE, all_right, every=2.0)
    finally:
        c.timings["settled_after_restart"] = time.monotonic() - restarted
        c.timings["total"] = time.monotonic() - started
        beats.stop()
        print(f"\nHA: killed {victims} after {progress}/{COUNT} containers; timings {c.timings}; {state}")
        print(f"HA: beat processes seen at once: at most {beats.most} ({beats.samples} samples)")
    assert beats.most == 1, "celery beat ran more than once at a time"
    for pk_ in [*deployment(c, pk)["workloads"], ctl]:
        c.api("DELETE", f"/api/workloads/{pk_}/", until=time.monotonic() + 30)
