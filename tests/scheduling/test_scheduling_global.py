"""GLOBAL from a water level (scheduling.waterlevel) against the step-by-step oracle of Eru's Go code.

The oracle (``heap_global``) pops one instance at a time and adds the rate to the usage in floats;
the water level must give the same final counts, exactly, ties to the earlier node included. The
float sums themselves (``exact_key``/``exact_count``) are checked against a plain loop of additions.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scheduling import NodeInfo, SchedulingError, plan, waterlevel
from scheduling.strategies import _global_heap
from scheduling.waterlevel import exact_count, exact_key, level_counts
from tests.scheduling.scheduling_oracle import heap_global

MAX_EXAMPLES = int(os.environ.get("SCHEDULING_EXAMPLES", "200"))
EXAMPLES = settings(max_examples=MAX_EXAMPLES, deadline=None)
# small_limits only patches module constants: the same for every generated input.
PATCHED = settings(EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture])


def float_sums(u: float, r: float, n: int) -> Iterator[float]:
    """``u + r``, ``u + r + r``, … as Eru's ``usage += rate`` makes them."""
    for _ in range(n):
        u += r
        yield u


def oracle_counts(us: Sequence[float], rs: Sequence[float], caps: Sequence[int], need: int) -> list[int]:
    infos = [NodeInfo(f"n{i}", c, 0, u, r) for i, (u, r, c) in enumerate(zip(us, rs, caps, strict=True))]
    deploy = heap_global(infos, need, sum(caps), 0)
    return [deploy.get(f"n{i}", 0) for i in range(len(us))]


def check(us: Sequence[float], rs: Sequence[float], caps: Sequence[int], need: int) -> list[int]:
    counts = level_counts(us, rs, caps, need)
    assert counts is not None
    assert counts == oracle_counts(us, rs, caps, need)
    return counts


@pytest.fixture(params=["as shipped", "tiny sample and window"])
def small_limits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the sample and the window so that small fleets take the paths of large ones:
    a strided sample, Newton steps that miss, a bracket halved in float order, adjacent ends."""
    if request.param != "as shipped":
        monkeypatch.setattr(waterlevel, "_SAMPLE", 3)
        monkeypatch.setattr(waterlevel, "_WINDOW", 2)


# --- the float sums ---------------------------------------------------------------------------

usages = st.one_of(
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 1.0, 3.0, 1e-300]),
    st.floats(0.0, 1e6, allow_nan=False, allow_infinity=False),
)
rates = st.one_of(
    st.sampled_from([0.01, 0.05, 0.1, 0.3, 1.3 / 24 / 100, 3.725290298461914e-08, 1e-17, 2.0**-53]),
    st.floats(1e-12, 10.0, allow_nan=False, allow_infinity=False),
)


@EXAMPLES
@given(usages, rates, st.integers(1, 3000))
def test_exact_key_is_the_float_sum(u: float, r: float, n: int) -> None:
    sums = list(float_sums(u, r, n))
    for j in {min(n, k) for k in (1, 2, 3, n // 3 or 1, n // 2 or 1, n - 1 or 1, n)}:
        assert exact_key(u, r, j) == sums[j - 1]


@EXAMPLES
@given(usages, rates, st.integers(1, 3000), st.floats(0.0, 1.0), st.booleans())
def test_exact_count_is_the_float_sums_up_to_a_limit(
    u: float, r: float, n: int, where: float, on_a_key: bool
) -> None:
    sums = list(float_sums(u, r, n))
    limit = sums[int(where * (n - 1))] if on_a_key else u + where * (sums[-1] - u) * 1.1
    count = sum(1 for s in sums if s <= limit)
    assert exact_count(u, r, n, limit) == (count, sums[count - 1] if count else u)


@pytest.mark.parametrize("e", [-60, -8, -1, 0, 10, 40])
@pytest.mark.parametrize("half", [0.5, 1.5, 2.5, 7.5, 0.25, 0.75])
def test_exact_key_ties_to_even(e: int, half: float) -> None:
    """Rates that are an odd number of half ulps round up or down by the parity of the sum."""
    q = math.ldexp(1.0, e - 52)  # ulp of [2^e, 2^(e+1))
    r = half * q
    for u in (math.ldexp(1.0, e), math.ldexp(1.0, e) + q, math.ldexp(1.0, e) + 3 * q, math.ldexp(1.5, e)):
        sums = list(float_sums(u, r, 5000))
        for j in (1, 2, 3, 4, 17, 1000, 4999, 5000):
            assert exact_key(u, r, j) == sums[j - 1]


def test_exact_key_across_binades_and_stuck() -> None:
    # from 0 through many binades; below half an ulp the sum never moves
    sums = list(float_sums(0.0, 1e-3, 100_000))
    assert [exact_key(0.0, 1e-3, j) for j in (1, 2, 1023, 1024, 65_536, 100_000)] == [
        sums[j - 1] for j in (1, 2, 1023, 1024, 65_536, 100_000)
    ]
    assert exact_key(1.0, 1e-17, 10**12) == 1.0
    assert exact_count(1.0, 1e-17, 10**12, 1.0) == (10**12, 1.0)
    subnormal = 5e-324
    sums = list(float_sums(0.0, subnormal, 3000))
    assert exact_key(0.0, subnormal, 3000) == sums[-1]


# --- the plan -----------------------------------------------------------------------------------


@st.composite
def fleets(draw: st.DrawFn, max_nodes: int = 40) -> tuple[list[float], list[float], list[int], int]:
    """Random fleets: usages and rates from small sets (ties) or anywhere, capacities, some rate 0."""
    size = draw(st.integers(1, max_nodes))
    tied = draw(st.booleans())
    us, rs, caps = [], [], []
    for _ in range(size):
        if tied:
            us.append(draw(st.sampled_from([0.0, 0.1, 0.15, 0.2, 0.25, 0.5, 0.7])))
            rs.append(draw(st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.3, 1.3 / 24 / 100])))
        else:
            us.append(draw(st.floats(0.0, 2.0)))
            rs.append(draw(st.one_of(st.just(0.0), st.floats(1e-6, 0.5))))
        caps.append(draw(st.integers(1, 60)))
    need = draw(st.integers(1, max(1, sum(caps) - 1)))
    assume(need < sum(caps))
    return us, rs, caps, need


@PATCHED
@given(fleets())
def test_level_is_the_heap(
    small_limits: None, fleet: tuple[list[float], list[float], list[int], int]
) -> None:
    check(*fleet)


@PATCHED
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 1e4),
            st.integers(-33, 3).map(lambda e: 10.0**e),
            st.floats(1.0, 9.99),
            st.integers(1, 10**6),
        ),
        min_size=1,
        max_size=20,
    ),
    st.integers(1, 3000),
)
def test_level_is_the_heap_over_wide_ranges(
    small_limits: None, nodes: list[tuple[float, float, float, int]], need: int
) -> None:
    """Usages up to 1e4, rates from 1e-33 to 1e4 (far below an ulp of the usage, too: stuck sums),
    capacities up to a million: wide rounding bands, nodes walked in floats."""
    us = [u for u, _, _, _ in nodes]
    rs = [scale * mantissa for _, scale, mantissa, _ in nodes]
    caps = [cap for _, _, _, cap in nodes]
    assume(need < sum(caps))
    check(us, rs, caps, need)


@PATCHED
@given(
    st.integers(1, 200),
    st.sampled_from([0.0, 0.1, 0.5]),
    st.sampled_from([0.01, 0.05, 0.1, 1.3 / 48 / 100]),
    st.integers(1, 40),
    st.floats(0.0, 1.0, exclude_max=True),
)
def test_identical_nodes_tie_in_input_order(
    small_limits: None, size: int, u: float, r: float, cap: int, where: float
) -> None:
    """Every level is one tie across the fleet: the earlier nodes get the odd instances."""
    need = 1 + int(where * (size * cap - 1))
    assume(need < size * cap)
    counts = check([u] * size, [r] * size, [cap] * size, need)
    assert counts == sorted(counts, reverse=True)
    assert max(counts) - min(counts) <= 1


@PATCHED
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 30)), min_size=1, max_size=30), st.data())
def test_nodes_on_one_grid_tie_across_usages(
    small_limits: None, nodes: list[tuple[int, int]], data: st.DataObject
) -> None:
    """Usages that are multiples of the rate put keys of different nodes on the same ideal level,
    where only the float sums tell them apart."""
    rate = data.draw(st.sampled_from([0.05, 0.01, 1.3 / 24 / 100, 0.1]))
    us = [steps * rate for steps, _ in nodes]
    caps = [cap for _, cap in nodes]
    assume(sum(caps) > 1)
    check(us, [rate] * len(nodes), caps, data.draw(st.integers(1, sum(caps) - 1)))


@EXAMPLES
@given(fleets(12), st.integers(0, 500))
def test_plan_is_the_heap_at_every_count(
    fleet: tuple[list[float], list[float], list[int], int], extra: int
) -> None:
    """Through plan(): counts up to and past what fits, nodes without room, the error messages."""
    us, rs, caps, _ = fleet
    infos = [
        NodeInfo(f"n{i}", c if i % 5 else 0, 0, u, r)
        for i, (u, r, c) in enumerate(zip(us, rs, caps, strict=True))
    ]
    total = sum(i.capacity for i in infos)
    for need in {1, total - 1, total, total + 1, total + extra}:
        if need < 1:
            continue
        try:
            ours: object = plan("GLOBAL", infos, need, total)
        except SchedulingError as error:
            ours = str(error)
        try:
            theirs: object = heap_global(infos, need, total, 0)
        except SchedulingError as error:
            theirs = str(error)
        assert ours == theirs
    if total:  # a caller's total above the real capacity: Eru runs out of nodes
        with pytest.raises(SchedulingError) as raised:
            plan("GLOBAL", infos, total + 1, total + 1)
        assert f"need: {total + 1}, available: {total}" in str(raised.value)


def test_tiny_rates_and_huge_capacities() -> None:
    """Issue 455's nodes (rates of 4e-8, capacities of millions): the rounding band is too wide for
    the floors, every node is walked in floats."""
    rate = 3.725290298461914e-08
    us = [0.07999999999999996, 0.24, 0.45999999999999996, 0.08, 0.5259232954545454]
    caps = [10726691, 4290676, 4290676, 5_000_000, 100]
    for need in (1, 2, 5_000, 50_000):
        check(us, [rate, rate, rate, rate * 3, 0.0000712], caps, need)
    # Each node's band is narrow, but one has the capacity and the other the usage / rate for a
    # wide one: then every node is walked.
    for need in (1, 2, 3_000):
        check([0.0, 0.5, 0.1], [1e-7, 1e-13, 0.01], [10**7, 1, 30], need)


@pytest.mark.parametrize("seed", [1, 2])
def test_one_node_of_tiny_rate_among_ordinary_ones(seed: int) -> None:
    """Only the node whose band can grow wide is walked in floats, the others keep their floors."""
    rng = random.Random(seed)
    us = [rng.choice([0.1, 0.2, 0.35]) for _ in range(60)] + [0.3]
    rs = [rng.choice([0.01, 0.05, 1.3 / 24 / 100]) for _ in range(60)] + [3.725290298461914e-08]
    caps = [rng.randrange(1, 40) for _ in range(60)] + [5_000_000]
    for need in (100, 700, 1500, 100_000):
        check(us, rs, caps, need)


def test_stuck_sums_and_unbound_nodes(small_limits: None) -> None:
    """A rate below half an ulp never moves the key; rate 0 nodes (UNLIMITED capacity) neither.
    With the tiny window, the bracket around the 1.0 keys is halved down to adjacent floats."""
    us = [1.0, 0.5, 1.0, 0.9, 0.25, 1.0, 1.0]
    rs = [1e-17, 0.1, 0.0, 0.05, 0.0, 2e-17, 1e-17]
    caps = [300, 5, 10**18, 4, 7, 50, 40]
    for need in (1, 7, 8, 12, 16, 300, 310, 320, 400, 10_000):
        level = level_counts(us, rs, caps, need)
        assert level is not None
        infos = [NodeInfo(f"n{i}", c, 0, u, r) for i, (u, r, c) in enumerate(zip(us, rs, caps, strict=True))]
        deploy = _global_heap(infos, need)
        assert level == [deploy.get(f"n{i}", 0) for i in range(len(us))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_large_fleet_is_the_heap(seed: int) -> None:
    """5,000 nodes (a strided sample of 2,500): Eru's bench shape, random usages, four node sizes."""
    rng = random.Random(seed)
    us, rs, caps = [], [], []
    for _ in range(5000):
        cores = rng.choice((24, 32, 48, 64))
        used = round(rng.randrange(0, cores * 5) / 10, 1)
        us.append(used / cores / 100)
        rs.append(1.3 / cores / 100)
        caps.append(int((cores - used) / 1.3))
    for need in (rng.randrange(1, 2000), sum(caps) * 3 // 4, sum(caps) - 1):
        check(us, rs, caps, need)


def test_a_fleet_listed_in_a_repeating_pattern_is_the_heap() -> None:
    """Node sizes and loads repeating every 4 nodes (a strided sample would see one size only)."""
    rng = random.Random(4)
    us, rs, caps = [], [], []
    for i in range(4096):
        cores = (24, 32, 48, 64)[i % 4]
        used = (0.0, 10.0, 2.0, 30.0)[i % 4] + rng.randrange(0, 10) / 10
        us.append(used / cores / 100)
        rs.append(1.3 / cores / 100)
        caps.append(int((cores - used) / 1.3))
    for need in (5000, sum(caps) // 2, sum(caps) - 300):
        check(us, rs, caps, need)


def test_a_large_homogeneous_fleet_is_the_heap() -> None:
    size = 3000
    for need in (size * 18, size * 18 - 1, size * 17 + 1234):
        counts = check([0.0] * size, [1.3 / 48 / 100] * size, [36] * size, need)
        assert counts[0] == -(-need // size)


def test_the_bracket_ends_of_last_resort() -> None:
    fleet = waterlevel._Fleet([0.5, 0.0, 2.0], [0.1, 0.0, 1e-9], [3, 10**18, 10**6])
    assert fleet.counts(-1.0)[3] == 0
    assert fleet.counts(fleet.tmax)[3] == 3 + 10**18 + 10**6


@pytest.mark.parametrize(
    ("us", "rs"),
    [([0.5, -0.1], [0.1, 0.1]), ([0.5, 0.1], [0.1, -0.1]), ([math.inf, 0.1], [0.1, 0.1]), ([0.5], [1e-200])],
)
def test_outside_the_exact_range_the_caller_pops_the_heap(us: list[float], rs: list[float]) -> None:
    assert level_counts(us, rs, [3] * len(us), 2) is None
    infos = [NodeInfo(f"n{i}", 3, 0, u, r) for i, (u, r) in enumerate(zip(us, rs, strict=True))]
    assert plan("GLOBAL", infos, 2, 3 * len(us)) == heap_global(infos, 2, 3 * len(us), 0)


def test_nodes_sharing_a_name_share_a_count() -> None:
    infos = [NodeInfo("a", 5, 0, 0.1, 0.1), NodeInfo("b", 5, 0, 0.15, 0.1), NodeInfo("a", 5, 0, 0.2, 0.05)]
    for need in range(1, 15):
        assert plan("GLOBAL", infos, need, 15) == heap_global(infos, need, 15, 0)
