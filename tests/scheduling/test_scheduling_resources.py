"""Requests, capacity, allocation, realloc, remap, engine capacity and the Docker mapping."""

from __future__ import annotations

from typing import Any

import pytest

from scheduling import (
    UNLIMITED,
    GiB,
    InvalidRequest,
    MiB,
    NodeInfo,
    NodeResources,
    NotEnoughResource,
    ResourceRequest,
    allocate,
    deploy_capacity,
    deploy_infos,
    docker_settings,
    engine_capacity,
    node_deploy_capacity,
    normalize_request,
    realloc,
    release,
    share_pool,
)

CAPACITY = "cannot alloc a plan, not enough nodes capacity"
MB = 1000 * 1000


def node(
    name: str = "n1",
    cores: int = 2,
    memory: int = 4 * GiB,
    used: dict[str, int] | None = None,
    used_cpu: float = 0.0,
    used_memory: int = 0,
    **kwargs: Any,
) -> NodeResources:
    share_base = kwargs.get("share_base", 100)
    return NodeResources(
        name,
        {str(i): share_base for i in range(cores)},
        memory,
        used or {},
        used_cpu,
        used_memory,
        **kwargs,
    )


# --- request rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, ResourceRequest()),
        ({"cpu_limit": 2}, ResourceRequest(2, 2)),  # 1. request defaults to the limit
        ({"cpu_request": 1}, ResourceRequest(1, 0)),  # limit 0 = unlimited
        ({"memory_limit": 64 * MiB}, ResourceRequest(0, 0, 64 * MiB, 64 * MiB)),  # 5.
        ({"memory_request": MiB}, ResourceRequest(0, 0, MiB, 0)),
        ({"memory_request": 8 * MiB, "memory_limit": 7 * MiB}, ResourceRequest(0, 0, 8 * MiB, 8 * MiB)),  # 6.
        ({"cpu_request": 2, "cpu_limit": 1}, ResourceRequest(2, 2)),  # 7.
        ({"cpu_request": 1, "cpu_limit": 2}, ResourceRequest(1, 2)),
        ({"cpu_request": 1, "cpu_limit": 2, "cpu_bind": True}, ResourceRequest(2, 2, cpu_bind=True)),  # 8.
        ({"cpu_request": 1.2, "cpu_bind": True}, ResourceRequest(1.2, 0, cpu_bind=True)),
        ({"cpu_limit": 0.5, "cpu_bind": True}, ResourceRequest(0.5, 0.5, cpu_bind=True)),
        ({"memory_limit": 6 * MiB}, ResourceRequest(0, 0, 6 * MiB, 6 * MiB)),
        ({"memory_request": 2 * GiB, "memory_limit": 2.0 * GiB}, ResourceRequest(0, 0, 2 * GiB, 2 * GiB)),
    ],
)
def test_normalize_request(given: dict[str, Any], expected: ResourceRequest) -> None:
    assert normalize_request(**given) == expected


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({"memory_request": -1}, "memory_request", "limit or request less than 0: invalid memory"),
        (
            {"memory_limit": -1, "cpu_request": -1},
            "memory_limit",
            "limit or request less than 0: invalid memory",
        ),
        ({"cpu_request": -1}, "cpu_request", "limit or request less than 0: invalid cpu"),
        ({"cpu_limit": -0.5}, "cpu_limit", "limit or request less than 0: invalid cpu"),
        ({"cpu_request": -1, "cpu_bind": True}, "cpu_request", "limit or request less than 0: invalid cpu"),
        ({"cpu_bind": True}, "cpu_request", "unlimited request with bind: invalid cpu"),
        (
            {"memory_limit": 64 * MiB, "cpu_bind": True},
            "cpu_request",
            "unlimited request with bind: invalid cpu",
        ),
        (
            {"memory_limit": MiB},
            "memory_limit",
            "memory_limit: 1048576 is below the minimum of 6 MiB (6291456 bytes); use 0 for unlimited",
        ),
        (
            {"memory_request": 8 * MiB, "memory_limit": 1},
            "memory_limit",
            "memory_limit: 1 is below the minimum of 6 MiB (6291456 bytes); use 0 for unlimited",
        ),
        ({"cpu_request": float("nan")}, "cpu_request", "cpu_request: nan is not a finite number"),
        ({"cpu_limit": float("inf")}, "cpu_limit", "cpu_limit: inf is not a finite number"),
        ({"memory_limit": float("inf")}, "memory_limit", "memory_limit: inf is not a whole number of bytes"),
        ({"memory_request": 1.5}, "memory_request", "memory_request: 1.5 is not a whole number of bytes"),
        ({"cpu_request": "1"}, "cpu_request", "cpu_request: '1' is not a number"),
        ({"cpu_bind": "yes"}, "cpu_bind", "cpu_bind: 'yes' is not a boolean"),
    ],
)
def test_normalize_request_errors(given: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        normalize_request(**given)
    assert error.value.field == field
    assert str(error.value) == message


# --- per-node capacity -----------------------------------------------------------------------


def test_unbound_capacity_is_memory_driven() -> None:
    n = node(memory=4 * GiB, used_memory=GiB)
    info = node_deploy_capacity(n, normalize_request(cpu_request=1, memory_request=512 * MiB))
    assert info == NodeInfo("n1", 6, 0, 0.25, 0.125)


def test_unbound_without_memory_request_is_unlimited() -> None:
    n = node(memory=4 * GiB, used_memory=GiB)
    assert node_deploy_capacity(n, normalize_request(cpu_limit=2)) == NodeInfo("n1", UNLIMITED, 0, 0.25, 0.0)


@pytest.mark.parametrize(
    ("n", "req"),
    [
        (node(cores=2), normalize_request(cpu_request=2.5)),  # more cpu than cores
        (node(memory=GiB, used_memory=GiB), normalize_request(memory_request=MiB)),  # no memory left
        (node(memory=GiB, used_memory=2 * GiB), normalize_request(memory_request=MiB)),  # over-committed
        (node(memory=GiB), normalize_request(memory_request=2 * GiB)),
        (node(cores=2, used={"0": 100, "1": 50}), normalize_request(cpu_request=1, cpu_bind=True)),
        (node(cores=2, memory=1024), normalize_request(cpu_request=0.1, memory_request=1025, cpu_bind=True)),
    ],
)
def test_no_capacity(n: NodeResources, req: ResourceRequest) -> None:
    assert node_deploy_capacity(n, req) is None


def test_bound_capacity_counts_plans_and_divides_by_weight() -> None:
    n = node(cores=4, used={"0": 100}, used_cpu=1.5)
    info = node_deploy_capacity(n, normalize_request(cpu_request=1, cpu_bind=True))
    assert info == NodeInfo("n1", 3, 0, 1.5 / 4 / 100, 1 / 4 / 100)


def test_bound_capacity_limited_by_memory() -> None:
    n = node(cores=2, memory=1024)
    req = normalize_request(cpu_request=0.1, memory_request=1024, cpu_bind=True)
    assert node_deploy_capacity(n, req) == NodeInfo("n1", 1, 0, 0.0, 0.1 / 2 / 100)


def test_bound_capacity_with_max_fragment_cores() -> None:
    n = node(cores=6, memory=12 * GiB, max_fragment_cores=2)
    info = node_deploy_capacity(n, normalize_request(cpu_request=1.7, memory_request=1, cpu_bind=True))
    assert info is not None
    assert info.capacity == 2


def test_bound_capacity_with_numa() -> None:
    n = node(
        cores=4,
        numa={"0": "0", "1": "0", "2": "1", "3": "1"},
        numa_memory={"0": 2 * GiB, "1": 2 * GiB},
        used_numa_memory={"0": 2 * GiB},
    )
    info = node_deploy_capacity(n, normalize_request(cpu_request=1, memory_request=GiB, cpu_bind=True))
    # NUMA node 0 has no memory left: two plans on NUMA node 1, then the rest across nodes
    assert info is not None
    assert info.capacity == 4


def test_deploy_capacity_dry_run() -> None:
    nodes = [node("a", memory=4 * GiB), node("b", memory=4 * GiB), node("c", memory=0)]
    req = normalize_request(cpu_request=1, memory_request=512 * MB)
    assert deploy_capacity(nodes, req) == ({"a": 8, "b": 8}, 16)
    assert deploy_capacity(nodes, normalize_request(cpu_request=1)) == (
        {"a": UNLIMITED, "b": UNLIMITED, "c": UNLIMITED},
        UNLIMITED,
    )
    with pytest.raises(NotEnoughResource) as error:
        deploy_capacity(nodes, normalize_request(memory_request=5 * GiB))
    assert str(error.value) == (
        "no node meets all the resource requirements at the same time: "
        "cannot alloc a plan, not enough resource"
    )
    with pytest.raises(NotEnoughResource):
        deploy_capacity([], req)


def test_deploy_infos_fill_in_counts() -> None:
    nodes = [node("a"), node("b", memory=0)]
    infos, total = deploy_infos(nodes, normalize_request(memory_request=GiB), {"a": 3, "z": 1})
    assert infos == [NodeInfo("a", 4, 3, 0.0, 0.25)]
    assert total == 4


# --- allocate / release ----------------------------------------------------------------------


def test_allocate_unbound() -> None:
    n = node(used_cpu=0.1, used_memory=GiB)
    a = allocate(n, normalize_request(cpu_request=0.1, memory_request=GiB), 3)
    assert a.cpu_maps == [{}, {}, {}]
    assert a.used_cpu == 0.4  # Eru rounds to 1e-9 after every addition: no 0.30000000000000004
    assert a.used_memory == 4 * GiB
    assert a.used_cpu_map == {}


def test_allocate_bound_applies_plans_one_after_another() -> None:
    n = node(cores=4, used={"0": 100})
    a = allocate(n, normalize_request(cpu_request=1.5, memory_request=MiB, cpu_bind=True), 2)
    assert a.cpu_maps == [{"1": 50, "2": 100}, {"1": 50, "3": 100}]
    assert a.used_cpu_map == {"0": 100, "1": 100, "2": 100, "3": 100}
    assert a.used_cpu == 3.0
    assert a.used_memory == 2 * MiB
    assert a.numa_nodes == ["", ""]


def test_allocate_bound_numa_memory() -> None:
    n = node(cores=2, numa={"0": "0", "1": "1"}, numa_memory={"0": GiB, "1": GiB})
    a = allocate(n, normalize_request(cpu_request=1, memory_request=GiB, cpu_bind=True), 2)
    assert a.numa_nodes == ["0", "1"]
    assert a.used_numa_memory == {"0": GiB, "1": GiB}


@pytest.mark.parametrize(
    ("n", "req", "count", "message"),
    [
        (node(cores=2), normalize_request(cpu_request=1000, memory_request=GiB), 1, f"cpu: {CAPACITY}"),
        (
            node(memory=4 * GiB),
            normalize_request(cpu_request=1, memory_request=5 * GiB),
            1,
            f"memory: {CAPACITY}",
        ),
        (node(memory=4 * GiB), normalize_request(memory_request=GiB), 5, f"memory: {CAPACITY}"),
        (node(cores=2), normalize_request(cpu_request=2.2, cpu_bind=True), 1, f"cpu: {CAPACITY}"),
        (node(cores=2), normalize_request(cpu_request=1, cpu_bind=True), 3, f"cpu: {CAPACITY}"),
    ],
)
def test_allocate_errors(n: NodeResources, req: ResourceRequest, count: int, message: str) -> None:
    with pytest.raises(NotEnoughResource) as error:
        allocate(n, req, count)
    assert str(error.value) == message


def test_allocate_nothing() -> None:
    n = node(used={"0": 10}, used_cpu=0.1)
    a = allocate(n, normalize_request(cpu_request=1, cpu_bind=True), 0)
    assert (a.cpu_maps, a.used_cpu_map, a.used_cpu, a.used_memory) == ([], {"0": 10}, 0.1, 0)
    with pytest.raises(InvalidRequest):
        allocate(n, normalize_request(), -1)


def test_release_is_the_inverse_and_never_negative() -> None:
    n = node(cores=4, used={"0": 100})
    req = normalize_request(cpu_request=1.5, memory_request=MiB, cpu_bind=True)
    a = allocate(n, req, 1)
    after = NodeResources("n1", n.cpu_map, n.memory, a.used_cpu_map, a.used_cpu, a.used_memory)
    assert release(after, req, a.cpu_maps[0]) == ({"0": 100, "1": 0, "2": 0}, 0.0, 0)
    assert release(n, req, {"0": 300, "5": 10}) == ({"0": 0, "5": 0}, 0.0, 0)


# --- realloc ---------------------------------------------------------------------------------


def realloc_node() -> tuple[NodeResources, ResourceRequest, dict[str, int]]:
    old = normalize_request(cpu_request=1, cpu_limit=1, memory_request=GiB, memory_limit=GiB, cpu_bind=True)
    return node(cores=2, used={"0": 100}, used_cpu=1, used_memory=GiB), old, {"0": 100}


def test_realloc_shrinks_on_the_same_core() -> None:
    n, old, cpu_map = realloc_node()
    r = realloc(n, old, cpu_map, cpu_request=-0.5, cpu_limit=-0.5)
    assert r.request == ResourceRequest(0.5, 0.5, GiB, GiB, True)
    assert r.cpu_map == {"0": 50}
    assert (r.used_cpu_map, r.used_cpu, r.used_memory) == ({"0": 50}, 0.5, GiB)


def test_realloc_grows_keeping_the_old_core() -> None:
    n, old, cpu_map = realloc_node()
    r = realloc(n, old, cpu_map, cpu_request=0.5, cpu_limit=0.5, memory_request=GiB, memory_limit=GiB)
    # Eru's affinity puts the old core first, and the mixed search turns the first whole core into
    # the fragment core: the old core keeps half of its pieces.
    assert r.cpu_map == {"0": 50, "1": 100}
    assert (r.used_cpu_map, r.used_cpu, r.used_memory) == ({"0": 50, "1": 100}, 1.5, 2 * GiB)
    r = realloc(n, old, cpu_map, cpu_request=1, cpu_limit=1)
    assert r.cpu_map == {"0": 100, "1": 100}


def test_realloc_unbind_and_bind() -> None:
    n, old, cpu_map = realloc_node()
    r = realloc(n, old, cpu_map, cpu_bind=False)
    assert r.cpu_map == {}
    assert r.request.cpu_bind is False
    assert (r.used_cpu_map, r.used_cpu, r.used_memory) == ({"0": 0}, 1.0, GiB)
    unbound = normalize_request(cpu_request=1, memory_request=GiB)
    n2 = node(cores=2, used_cpu=1, used_memory=GiB)
    r = realloc(n2, unbound, {}, cpu_bind=True)
    assert r.cpu_map == {"0": 100}
    assert r.used_cpu_map == {"0": 100}


@pytest.mark.parametrize(
    ("delta", "error_type", "message"),
    [
        ({"cpu_request": -3}, InvalidRequest, "limit or request less than 0: invalid cpu"),
        ({"cpu_request": 2}, NotEnoughResource, "cannot alloc a plan, not enough resource"),
        ({"cpu_request": -1, "cpu_limit": -1}, InvalidRequest, "unlimited request with bind: invalid cpu"),
        (
            {"memory_request": 10**15, "memory_limit": 10**15, "cpu_bind": False},
            NotEnoughResource,
            f"memory: {CAPACITY}",
        ),
        ({"cpu_request": 2, "cpu_bind": False}, NotEnoughResource, f"cpu: {CAPACITY}"),
        (
            {"memory_limit": 3 * MiB - GiB},
            InvalidRequest,
            "memory_limit: 3145728 is below the minimum of 6 MiB (6291456 bytes); use 0 for unlimited",
        ),
    ],
)
def test_realloc_errors(delta: dict[str, Any], error_type: type[Exception], message: str) -> None:
    n, old, cpu_map = realloc_node()
    with pytest.raises(error_type) as error:
        realloc(n, old, cpu_map, **delta)
    assert str(error.value) == message


def test_realloc_memory_limit_to_unlimited() -> None:
    n, old, cpu_map = realloc_node()
    r = realloc(n, old, cpu_map, memory_limit=-GiB)
    assert r.request.memory_limit == 0
    assert r.request.memory_request == GiB


# --- remap, engine capacity, docker ----------------------------------------------------------


def test_share_pool() -> None:
    assert share_pool(node(cores=4, used={"0": 100, "1": 100})) == ["2", "3"]
    assert share_pool(node(cores=4, used={"0": 100, "1": 30})) == ["2", "3"]
    assert share_pool(node(cores=4, used={str(i): 100 for i in range(4)})) == ["0", "1", "2", "3"]
    assert share_pool(node(cores=12, used={"1": 1})) == ["0", *(str(i) for i in range(2, 12))]


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((4, 8 * GiB), {}, ({"0": 100, "1": 100, "2": 100, "3": 100}, 7 * GiB)),
        ((2, 8 * GiB), {"share_base": 10}, ({"0": 10, "1": 10}, 7 * GiB)),
        ((2, 8 * GiB), {"memory_reserve": 0}, ({"0": 100, "1": 100}, 8 * GiB)),
        ((2, 512 * MiB), {}, ({"0": 100, "1": 100}, 0)),
        ((8, 8 * GiB), {"cpu": 3, "memory": 2 * GiB}, ({"0": 100, "1": 100, "2": 100}, 2 * GiB)),
    ],
)
def test_engine_capacity(
    args: tuple[int, int], kwargs: dict[str, int], expected: tuple[dict[str, int], int]
) -> None:
    assert engine_capacity(*args, **kwargs) == expected


def test_engine_capacity_needs_a_core() -> None:
    with pytest.raises(InvalidRequest) as error:
        engine_capacity(0, GiB)
    assert str(error.value) == "invalid cpu map"


@pytest.mark.parametrize(
    ("req", "cpu_map", "kwargs", "expected"),
    [
        # white paper: cpu=1 unbound -> quota 100000
        (normalize_request(cpu_limit=1), {}, {}, {"cpu_period": 100000, "cpu_quota": 100000}),
        (
            normalize_request(cpu_limit=1.2),
            {},
            {"share_pool": ["1", "2"]},
            {"cpu_period": 100000, "cpu_quota": 120000, "cpuset_cpus": "1,2"},
        ),
        (normalize_request(cpu_request=1), {}, {}, {"cpu_period": 100000}),
        # bound: cpuset, shares from the fraction of the limit, no quota
        (normalize_request(cpu_request=1, cpu_bind=True), {"0": 100}, {}, {"cpuset_cpus": "0"}),
        (
            normalize_request(cpu_limit=1.2, cpu_bind=True),
            {"3": 20, "1": 100},
            {},
            {"cpuset_cpus": "1,3", "cpu_shares": 205},
        ),
        (
            normalize_request(cpu_limit=2.5, cpu_bind=True),
            {"10": 100, "2": 100, "9": 50},
            {"numa_node": "1"},
            {"cpuset_cpus": "2,9,10", "cpuset_mems": "1", "cpu_shares": 512},
        ),
        # memory
        (
            normalize_request(memory_limit=512 * MiB),
            {},
            {},
            {
                "cpu_period": 100000,
                "mem_limit": 512 * MiB,
                "memswap_limit": 512 * MiB,
                "mem_reservation": 256 * MiB,
            },
        ),
        (
            normalize_request(memory_limit=6 * MiB),
            {},
            {},
            {
                "cpu_period": 100000,
                "mem_limit": 6 * MiB,
                "memswap_limit": 6 * MiB,
                "mem_reservation": 6 * MiB,  # Docker's minimum, not half the limit
            },
        ),
        (normalize_request(memory_request=6 * MiB), {}, {}, {"cpu_period": 100000}),
    ],
)
def test_docker_settings(
    req: ResourceRequest, cpu_map: dict[str, int], kwargs: dict[str, Any], expected: dict[str, object]
) -> None:
    assert docker_settings(req, cpu_map, **kwargs) == expected
