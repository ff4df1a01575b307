"""The deploy path at fleet scale (issue 16, bench/fleet.py), without Docker: plans made against a
snapshot read without locks, then only the chosen nodes locked and checked again (a plan gone stale
is made again, at last under locks on every candidate); AUTO's roomiest nodes read from the
database giving the plan the engine gives over every candidate; one message per few hundred
creations, handed on one by one by a worker; and (services) the live-node set kept by a watch.
The races between processes are tests/clusters/test_concurrency.py and test_quota_race.py."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from clusters import etcd, selectors, services
from clusters.models import AuditEvent, Deployment, Node, Pod, Workload
from clusters.services import deploy
from tests.conftest import IMAGE

M, G = 1 << 20, 1 << 30


def _spec(pod: Pod, count: int = 1, **fields: Any) -> services.DeploySpec:
    data = {"app": "web", "entrypoint": "e", "image": IMAGE, "count": count, "cpu_limit": 0.1}
    data.update({"memory_request": "64M", "memory_limit": "64M", "cpu_bind": False, **fields})
    return services.deployment_validate(pod=pod, data=data)


def _deploy(pod: Pod, count: int = 1, **fields: Any) -> Deployment:
    return services.deployment_create(actor=services.SYSTEM, spec=_spec(pod, count, **fields))


def _consistent(pod: Pod, before: list[Node] = ()) -> None:  # type: ignore[assignment]
    """Every node's recorded usage is the sum of the rows holding an allocation there (and of what
    it used `before`, rows made as rows)."""
    base = {n.pk: n.used_memory for n in before}
    for node in Node.objects.filter(pod=pod):
        held = Workload.objects.filter(Workload.holding(), node=node)
        assert node.used_memory == base.get(node.pk, 0) + sum(w.memory_request for w in held), node.name
        assert node.used_cpu == pytest.approx(sum(w.cpu_request for w in held)), node.name
        assert node.used_memory <= node.memory


@pytest.fixture
def fleet(
    ui_pod: Pod, ui_node: Callable[..., Node], ui_alive: set[str], ui_enqueued: list[Any]
) -> list[Node]:
    """Twelve up nodes of 4 GiB with a little use each (n00 … n11)."""
    made = [ui_node(f"n{i:02d}", used_memory=(i % 4) * 128 * M) for i in range(12)]
    ui_alive.update(n.name for n in made)
    return made


# --- AUTO's roomiest nodes are the ones its plan over every candidate chooses -------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(12))
def test_auto_over_the_roomiest_nodes_is_auto_over_every_candidate(
    seed: int, ui_pod: Pod, ui_node: Callable[..., Node], ui_alive: set[str], ui_enqueued: list[Any]
) -> None:
    rng = random.Random(seed)
    for i in range(rng.randint(5, 40)):
        cores = rng.choice([1, 2, 4])
        node = ui_node(
            f"m{rng.randint(0, 99):02d}x{i}",
            cpu_map={str(c): 100 for c in range(cores)},
            memory=rng.choice([1, 2, 4]) * G,
            used_memory=rng.choice([0, 64 * M, 100 * M, 512 * M, G, 4 * G]),
            labels={"zone": rng.choice("ab")},
            bypass=rng.random() < 0.1,
        )
        if rng.random() < 0.85:
            ui_alive.add(node.name)
        if rng.random() < 0.3 and node.name in ui_alive and not node.bypass:
            with contextlib.suppress(ValidationError):  # full
                _deploy(ui_pod, node_names=[node.name])  # it holds the app
    for _ in range(6):
        fields: dict[str, Any] = {"count": rng.randint(1, 12)}
        fields["memory_request"] = rng.choice(["0", "64M", "300M", "1G"])
        fields["memory_limit"] = "1G" if fields["memory_request"] != "0" else "0"
        fields["cpu_request"] = rng.choice([0, 0.5, 2, 3])
        fields["cpu_limit"] = max(fields["cpu_request"], 0.1)
        if rng.random() < 0.3:
            fields["node_labels"] = {"zone": "a"}
        if rng.random() < 0.3:
            fields["nodes_limit"] = rng.randint(1, 3)
        spec = _spec(ui_pod, **fields)
        try:
            expected: dict[str, int] | str = deploy.deployment_plan(spec)
        except ValidationError as exc:
            expected = str(exc)
        roomiest = deploy._auto_roomiest(spec)
        if roomiest is None:
            continue  # the plan needs every candidate: the full read, as expected
        assert isinstance(expected, dict), (expected, fields)
        got = deploy._plan(spec, roomiest, {})
        assert len(roomiest) == spec.request.count == sum(got.values())
        # Equal up to ties (as Eru's heap): one instance each on nodes of the same capacities, all
        # of them candidates holding none of the app.
        candidates = {s.name: s for s in deploy._snapshot(spec)}
        holding = set(deploy._counts(spec))
        assert set(got) <= set(candidates), fields
        assert not {candidates[n].pk for n in got} & holding, fields
        assert set(got.values()) == set(expected.values()) == {1}, fields
        assert sorted(_fits(candidates[n], spec) for n in got) == sorted(
            _fits(candidates[n], spec) for n in expected
        ), fields


def _fits(state: selectors.NodeState, spec: services.DeploySpec) -> float:
    """How many unbound instances of the request the node takes by memory (without end: inf)."""
    r = state.resources
    ask = spec.resources.memory_request
    return (r.memory - r.used_memory) // ask if ask else float("inf")


@pytest.mark.django_db
def test_roomiest_nodes_skip_nodes_down_set_down_or_full(fleet: list[Node], ui_alive: set[str]) -> None:
    pod = fleet[0].pod
    Node.objects.filter(name="n00").update(bypass=True)
    ui_alive.discard("n04")
    Node.objects.filter(name="n08").update(used_memory=4 * G)
    spec = _spec(pod, count=3)
    roomiest = deploy._auto_roomiest(spec)
    assert roomiest is not None
    # The least used (i % 4 == 0: n00, n04, n08) are set down, down or full: the next ones, in a
    # random order (Eru's heap leaves ties unordered).
    assert sorted(s.name for s in roomiest) == ["n01", "n05", "n09"]
    assert deploy._plan(spec, roomiest, {}) == deploy.deployment_plan(spec) == {"n01": 1, "n05": 1, "n09": 1}


# --- a plan made against a snapshot is checked on the locked rows ------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_plan_gone_stale_is_made_again_and_nothing_leaks(
    fleet: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = fleet[0].pod
    planned = deploy._planned
    calls: list[dict[str, int]] = []

    def planned_then_filled(spec: Any, states: Any, counts: Any) -> dict[str, int]:
        plan = planned(spec, states, counts)
        if not calls:  # another deploy fills the chosen node before this one locks it
            Node.objects.filter(name__in=list(plan)).update(used_memory=4 * G)
        calls.append(plan)
        return plan

    monkeypatch.setattr(deploy, "_planned", planned_then_filled)
    d = _deploy(pod)
    assert len(calls) == 2
    assert calls[0] != calls[1]
    assert d.plan == calls[1]
    assert Deployment.objects.count() == 1  # the first attempt left nothing behind
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DEPLOYMENT_CREATE).count() == 1
    w = d.workloads.get()
    assert w.node.name in calls[1]
    Node.objects.filter(name__in=list(calls[0])).update(used_memory=0)  # undo the stand-in's fill
    _consistent(pod, [n for n in fleet if n.name not in calls[0]])


@pytest.mark.django_db(transaction=True)
def test_after_stale_plans_every_candidate_is_locked_and_the_plan_holds(
    fleet: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = fleet[0].pod
    attempts: list[bool] = []
    lock = deploy._lock_and_allocate

    def always_stale(*args: Any, optimistic: bool, **kwargs: Any) -> Any:
        attempts.append(optimistic)
        if optimistic:
            raise deploy._Conflict
        return lock(*args, optimistic=optimistic, **kwargs)

    monkeypatch.setattr(deploy, "_lock_and_allocate", always_stale)
    d = _deploy(pod, count=5)
    assert attempts == [True] * deploy.OPTIMISTIC_ATTEMPTS + [False]
    assert d.workloads.count() == 5
    _consistent(pod, fleet)


@pytest.mark.django_db(transaction=True)
def test_the_last_capacity_is_refused_with_eru_s_error_once_taken(fleet: list[Node]) -> None:
    pod = fleet[0].pod
    Node.objects.exclude(name="n05").update(bypass=True)
    Node.objects.filter(name="n05").update(used_memory=4 * G - 64 * M)  # room for one
    _deploy(pod)
    with pytest.raises(ValidationError) as err:
        _deploy(pod)
    assert "not enough resource" in str(err.value)
    assert Node.objects.get(name="n05").used_memory == 4 * G
    assert Deployment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_fill_made_against_counts_that_changed_is_made_again(
    fleet: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = fleet[0].pod
    planned = deploy._planned
    calls: list[dict[str, int]] = []

    def planned_then_raced(spec: Any, states: Any, counts: Any) -> dict[str, int]:
        plan = planned(spec, states, counts)
        if not calls:  # a racing deploy of the same app lands on n01 meanwhile, using nothing
            n01 = Node.objects.get(name="n01")
            Workload.objects.create(name="web_e_raced", pod=pod, node=n01, app="web", entrypoint="e")
        calls.append(plan)
        return plan

    monkeypatch.setattr(deploy, "_planned", planned_then_raced)
    d = _deploy(
        pod, count=2, strategy="FILL", node_names=["n01", "n02"], memory_request="0", memory_limit="0"
    )
    assert len(calls) == 2
    assert d.plan == {"n01": 1, "n02": 2}  # FILL tops each node up to 2, the raced one counted


# --- usage, audit, mirror and messages -----------------------------------------------------------------
@pytest.mark.django_db
def test_a_big_deploy_records_usage_and_sends_a_few_messages(
    fleet: list[Node], ui_enqueued: list[Any]
) -> None:
    pod = fleet[0].pod
    d = _deploy(pod, count=600)
    ids = sorted(d.workloads.values_list("pk", flat=True))
    batches = [a for a in ui_enqueued if a[0] == "agents.create_workloads"]
    assert [len(b[1]) for b in batches] == [deploy.CREATION_BATCH, 600 - deploy.CREATION_BATCH]
    assert sorted(pk for b in batches for pk in b[1]) == ids
    assert not [a for a in ui_enqueued if a[0] == "agents.create_workload"]
    seqs = sorted(d.workloads.values_list("seq", flat=True))
    assert seqs == list(range(600))
    assert len(set(d.workloads.values_list("name", flat=True))) == 600
    w = d.workloads.first()
    assert w is not None
    assert (w.image, w.memory_request, w.command, w.state) == (IMAGE, 64 * M, [], Workload.State.PENDING)
    assert w.team_id is None
    assert w.created_at is not None
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DEPLOYMENT_CREATE, target_id=str(d.pk)).exists()
    _consistent(pod, fleet)


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 40])
def test_names_an_existing_workload_has_are_drawn_again_by_the_insert(
    fleet: list[Node], monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    pod = fleet[0].pod
    first = _deploy(pod, count=count, app="clash")
    taken = list(first.workloads.order_by("seq").values_list("name", flat=True))
    drawn = [name.removeprefix("clash_e_") for name in taken]
    monkeypatch.setattr(deploy, "_idents", lambda n, seen: drawn[:n])  # every name drawn is taken
    again = _deploy(pod, count=count, app="clash")
    rows = list(again.workloads.order_by("seq"))
    assert [w.seq for w in rows] == list(range(count))
    assert not {w.name for w in rows} & set(taken)
    assert all(w.name.startswith("clash_e_") and len(w.name) == len("clash_e_") + 6 for w in rows)
    assert Workload.objects.filter(app="clash").count() == 2 * count
    _consistent(pod, fleet)


@pytest.mark.django_db
def test_a_small_deploy_sends_one_message_per_workload(fleet: list[Node], ui_enqueued: list[Any]) -> None:
    d = _deploy(fleet[0].pod, count=3)
    assert sorted(a for a in ui_enqueued if a[0].startswith("agents.create")) == sorted(
        ("agents.create_workload", pk) for pk in d.workloads.values_list("pk", flat=True)
    )


@pytest.mark.django_db
def test_bound_deploys_take_cores_and_record_them(
    ui_pod: Pod, ui_node: Callable[..., Node], ui_alive: set[str], ui_enqueued: list[Any]
) -> None:
    for i in range(3):
        ui_node(f"b{i}", cpu_map={"0": 100, "1": 100})
        ui_alive.add(f"b{i}")
    _deploy(ui_pod, count=3, cpu_bind=True, cpu_request=1, cpu_limit=1, app="whole")
    # As services.nodes.set_usage: a remap of each node whose share pool changed (a whole core
    # taken: the other one only).
    remaps = [a[1] for a in ui_enqueued if a[0] == "agents.remap_node"]
    assert sorted(remaps) == sorted(n.pk for n in Node.objects.filter(pod=ui_pod))
    d = _deploy(ui_pod, count=20, cpu_bind=True, cpu_request=0.1, cpu_limit=0.1)  # many: one INSERT
    assert d.workloads.count() == 20
    assert all(sum(w.cpu_map.values()) == 10 for w in d.workloads.all())
    for node in Node.objects.filter(pod=ui_pod):
        pieces: dict[str, int] = {}
        for w in node.workloads.all():
            for core, n in w.cpu_map.items():
                pieces[core] = pieces.get(core, 0) + n
        assert pieces == node.used_cpu_map
        assert node.used_cpu == pytest.approx(sum(w.cpu_request for w in node.workloads.all()))


def test_the_batched_creation_task_hands_on_only_pending_workloads(
    db: Any, fleet: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents import tasks

    d = _deploy(fleet[0].pod, count=4)
    ids = sorted(d.workloads.values_list("pk", flat=True))
    Workload.objects.filter(pk=ids[0]).update(state=Workload.State.RUNNING)
    sent: list[Any] = []
    monkeypatch.setattr(tasks.current_app, "producer_or_acquire", lambda: contextlib.nullcontext("p"))
    monkeypatch.setattr(
        tasks.create_workload, "apply_async", lambda args, producer: sent.append((args, producer))
    )
    tasks.create_workloads(ids + [10**9])
    assert sent == [((pk,), "p") for pk in ids[1:]]


# --- the live-node set (a real etcd) ------------------------------------------------------------------
@pytest.mark.services
def test_live_nodes_follow_heartbeats_coming_and_going(cluster: Any) -> None:
    c = etcd.client()
    prefix = etcd.key("/status:node/")
    c.delete_prefix(prefix)
    assert etcd.live_nodes() == frozenset()
    for name in ("a", "b", "c"):
        c.put(prefix + name, "{}")
    assert etcd.live_nodes() == {"a", "b", "c"} == etcd.alive_nodes(strict=True)
    c.delete(prefix + "b")
    c.put(prefix + "d", "{}")  # the same number of keys: the watch, not the count, says which
    import time

    deadline = time.monotonic() + 5
    while etcd.live_nodes() != {"a", "c", "d"} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert etcd.live_nodes() == {"a", "c", "d"} == etcd.alive_nodes(strict=True)
    for live in etcd._live_sets.values():  # a broken watch: read again whole, watched anew
        live.on_watch(live.generation, RuntimeError("stream broke"))
    c.put(prefix + "e", "{}")
    assert etcd.live_nodes() == {"a", "c", "d", "e"}
    # Several events in one revision (a transaction: one dead, one new; the count stays): each applied.
    swap = [c.transactions.delete(prefix + "e"), c.transactions.put(prefix + "g", "{}")]
    c.transaction(compare=[], success=swap, failure=[])
    deadline = time.monotonic() + 5
    while etcd.live_nodes() != {"a", "c", "d", "g"} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert etcd.live_nodes() == {"a", "c", "d", "g"}
    for live in etcd._live_sets.values():  # an old copy is read whole again, whatever its count says
        live.names.add("ghost")
        live.read_at -= live.FULL_READ
    assert etcd.live_nodes() == {"a", "c", "d", "g"}
    c.delete(prefix + "g")
    c.put(prefix + "e", "{}")
    lease = c.lease(1)
    c.put(prefix + "f", "{}", lease=lease)
    assert "f" in etcd.live_nodes()
    c.revoke_lease(lease.id)
    deadline = time.monotonic() + 5
    while "f" in etcd.live_nodes() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert etcd.live_nodes() == {"a", "c", "d", "e"}
    c.delete_prefix(prefix)
    assert selectors.alive_names() == frozenset()


@pytest.mark.django_db(transaction=True)
def test_a_plan_on_many_nodes_locks_the_pod_whole_and_still_checks_each(
    fleet: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    pod = fleet[0].pod
    monkeypatch.setattr(deploy, "LOCK_BY_POD", 2)
    d = _deploy(pod, count=5)
    assert d.workloads.count() == 5
    _consistent(pod, fleet)
    planned = deploy._planned
    calls: list[dict[str, int]] = []

    def planned_then_filled(spec: Any, states: Any, counts: Any) -> dict[str, int]:
        plan = planned(spec, states, counts)
        if not calls:  # another deploy fills one of the chosen nodes before this one locks the pod
            Node.objects.filter(name=sorted(plan)[0]).update(used_memory=4 * G)
        calls.append(plan)
        return plan

    monkeypatch.setattr(deploy, "_planned", planned_then_filled)
    d = _deploy(pod, count=3)
    assert len(calls) == 2
    assert sorted(calls[0])[0] not in calls[1]
    assert d.plan == calls[1]
