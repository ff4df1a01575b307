"""The quota arithmetic (clusters.quotas), pure: what fits, what a refusal says, how full a quota is."""

from __future__ import annotations

import pytest

from clusters.quotas import Amount, Limits, deploy_ask, excess, percent, realloc_ask, refusal

M, G = 1 << 20, 1 << 30


def test_a_deploy_above_the_cpu_quota_is_refused_naming_the_quota_the_use_and_the_request() -> None:
    message = refusal("web", "eru", Limits(cpu=4), Amount(3.5, 0, 7), deploy_ask(2, 0.5, 64 * M))
    assert message == "quota of team web in pod eru: cpu 4 — 3.5 in use, this deploy asks for 1 (2 × 0.5)"


def test_every_limit_gone_above_is_named_in_order() -> None:
    limits = Limits(cpu=2, memory=1 * G, workloads=3)
    message = refusal("web", "eru", limits, Amount(0.5, 768 * M, 2), deploy_ask(2, 0.5, 512 * M))
    assert message == (
        "quota of team web in pod eru: memory 1G — 768M in use, this deploy asks for 1G (2 × 512M); "
        "workloads 3 — 2 in use, this deploy asks for 2"
    )


def test_what_fits_exactly_fits_and_cpus_add_up_without_float_noise() -> None:
    limits = Limits(cpu=0.3, memory=3 * 64 * M, workloads=3)
    use = Amount(0.1 + 0.1, 2 * 64 * M, 2)  # 0.2 (0.20000000000000001)
    assert refusal("t", "p", limits, use, deploy_ask(1, 0.1, 64 * M)) is None  # 0.30000000000000004
    assert excess(limits, use, deploy_ask(2, 0.1, 64 * M)) == ["cpu", "memory", "workloads"]


def test_no_limit_means_no_refusal() -> None:
    assert refusal("t", "p", Limits(), Amount(1e6, 1 << 50, 10**6), deploy_ask(1000, 8, 8 * G)) is None
    assert excess(Limits(workloads=5), Amount(0, 0, 0), deploy_ask(5, 100, 100 * G)) == []


def test_a_quota_below_the_use_refuses_growth_only() -> None:
    over = Limits(cpu=1, memory=64 * M, workloads=1)
    use = Amount(2, 128 * M, 2)
    assert refusal("t", "p", over, use, deploy_ask(0, 1, 64 * M)) is None  # a plan of nothing
    shrink = realloc_ask(Amount(1, 64 * M), Amount(0.5, 32 * M))
    assert refusal("t", "p", over, use, shrink) is None
    grow = realloc_ask(Amount(1, 64 * M), Amount(1.5, 64 * M))
    assert refusal("t", "p", over, use, grow) == (
        "quota of team t in pod p: cpu 1 — 2 in use, this realloc asks for 0.5 more"
    )


def test_a_zero_quota_refuses_any_new_workload() -> None:
    message = refusal("t", "p", Limits(workloads=0), Amount(), deploy_ask(1, 0.1, 16 * M))
    assert message == "quota of team t in pod p: workloads 0 — 0 in use, this deploy asks for 1"


def test_under_a_cpu_or_memory_quota_a_request_of_zero_unlimited_is_refused() -> None:
    message = refusal("t", "p", Limits(cpu=8), Amount(), deploy_ask(1, 0.0, 64 * M, what="this lambda"))
    assert message == (
        "quota of team t in pod p: cpu 8 — this lambda asks for unlimited cpu (a request of 0): under "
        "a quota each workload must request some (cpu_request or cpu_limit above 0)"
    )
    assert excess(Limits(memory=G), Amount(), deploy_ask(1, 1, 0)) == ["memory"]
    assert excess(Limits(workloads=9), Amount(), deploy_ask(1, 0, 0)) == []  # not limited: fine
    # a realloc that makes a workload unlimited is growth; one that was unlimited may change its cpu
    assert excess(Limits(memory=G), Amount(), realloc_ask(Amount(1, 64 * M), Amount(1, 0))) == ["memory"]
    assert excess(Limits(memory=G), Amount(), realloc_ask(Amount(1, 0), Amount(0.5, 0))) == []


@pytest.mark.parametrize(
    ("use", "limit", "pct"),
    [(0, None, None), (1, 4, 25), (5, 4, 100), (0, 0, 0), (1, 0, 100), (0.1 + 0.2, 0.3, 100)],
)
def test_how_full_a_quota_is(use: float, limit: float | None, pct: int | None) -> None:
    assert percent(use, limit) == pct
