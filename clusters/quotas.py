"""Quota arithmetic, pure (no Django, no rows): what a team holds in a pod, what a change asks of it,
whether that fits under the team's limits, and the refusal that names the quota, the use and the ask.

The rows and the locks are clusters.services.quotas'; this only counts. A limit of None is no limit.
An ask that does not grow an amount (zero, as a replace asks; negative, as a shrinking realloc) is
never refused, even by a team already above its quota (a quota set below the use refuses new work
only, as Kubernetes' ResourceQuota does). A request of 0 is unlimited (Eru's rules make a request 0
only when its limit is 0): under a quota on cpu or memory a workload must request some, as
Kubernetes asks for requests under a compute quota — else it would hold unlimited for nothing."""

from __future__ import annotations

from dataclasses import dataclass

from schema import format_size

CPU_SLACK = 1e-9  # cpus are floats: 0.1 + 0.1 + 0.1 fits a quota of 0.3
AXES = ("cpu", "memory", "workloads")


@dataclass(frozen=True)
class Amount:
    """cpus (the sum of requests), memory (bytes of requests) and a number of workloads."""

    cpu: float = 0.0
    memory: int = 0
    workloads: int = 0

    def __add__(self, other: Amount) -> Amount:
        return Amount(self.cpu + other.cpu, self.memory + other.memory, self.workloads + other.workloads)

    def __mul__(self, n: int) -> Amount:
        return Amount(self.cpu * n, self.memory * n, self.workloads * n)


@dataclass(frozen=True)
class Limits:
    """A team's quota in a pod; None: no limit on that one."""

    cpu: float | None = None
    memory: int | None = None
    workloads: int | None = None


@dataclass(frozen=True)
class Ask:
    """What a change adds to a team's use, all together (`total`), and, for a deploy, how: `instances`
    × `each`. A delta (a realloc of one workload: no new workload) has no `each`."""

    total: Amount
    what: str = "this deploy"
    instances: int = 0
    each: Amount | None = None
    unlimited: tuple[str, ...] = ()  # axes it makes unlimited (a request of 0)


def _unlimited(cpu: float, memory: int) -> tuple[str, ...]:
    return tuple(axis for axis, value in (("cpu", cpu), ("memory", memory)) if value <= 0)


def deploy_ask(instances: int, cpu: float, memory: int, *, what: str = "this deploy") -> Ask:
    """A deploy (or a lambda) of `instances` workloads, each requesting `cpu` and `memory`."""
    each = Amount(cpu, memory, 1)
    return Ask(each * instances, what, instances, each, _unlimited(cpu, memory) if instances else ())


def realloc_ask(old: Amount, new: Amount, *, what: str = "this realloc") -> Ask:
    """One workload's requests changed from `old` to `new` (no new workload): the delta, and the
    axes it makes unlimited (a request going to 0; one already unlimited stays so)."""
    delta = Amount(new.cpu - old.cpu, new.memory - old.memory, 0)
    unlimited = tuple(a for a in _unlimited(new.cpu, new.memory) if getattr(old, a) > 0)
    return Ask(delta, what, unlimited=unlimited)


def _over(limit: float | None, use: float, ask: float, slack: float = 0.0) -> bool:
    return limit is not None and ask > 0 and use + ask > limit + slack


def excess(limits: Limits, use: Amount, ask: Ask) -> list[str]:
    """The axes (of AXES, in that order) on which `use` + the ask goes above the limit, or which
    the ask makes unlimited under a limit."""
    total = ask.total
    over = {
        "cpu": _over(limits.cpu, use.cpu, total.cpu, CPU_SLACK),
        "memory": _over(limits.memory, use.memory, total.memory),
        "workloads": _over(limits.workloads, use.workloads, total.workloads),
    }
    return [
        axis for axis in AXES if over[axis] or (axis in ask.unlimited and getattr(limits, axis) is not None)
    ]


def show(axis: str, value: float) -> str:
    """An amount as people read it: cpus as 0.5, memory as 512M, workloads as 3."""
    if axis == "memory":
        return format_size(int(value)) if value > 0 else "0"
    if axis == "cpu":
        return f"{value:.4g}"
    return str(int(value))


def _part(axis: str, limit: float, use: float, ask: Ask) -> str:
    if axis in ask.unlimited:
        return (
            f"{axis} {show(axis, limit)} — {ask.what} asks for unlimited {axis} (a request of 0): under "
            f"a quota each workload must request some ({axis}_request or {axis}_limit above 0)"
        )
    total = getattr(ask.total, axis)
    text = f"{axis} {show(axis, limit)} — {show(axis, use)} in use, {ask.what} asks for {show(axis, total)}"
    if ask.each is None:
        text += " more"
    elif ask.instances > 1 and axis != "workloads":
        text += f" ({ask.instances} × {show(axis, getattr(ask.each, axis))})"
    return text


def refusal(team: str, pod: str, limits: Limits, use: Amount, ask: Ask) -> str | None:
    """Why the ask does not fit the quota of `team` in `pod`, naming each limit it would go above,
    the use and the ask, e.g. "quota of team web in pod eru: cpu 4 — 3.5 in use, this deploy asks
    for 1 (2 × 0.5)"; None when it fits."""
    over = excess(limits, use, ask)
    if not over:
        return None
    parts = [_part(axis, getattr(limits, axis), getattr(use, axis), ask) for axis in over]
    return f"quota of team {team} in pod {pod}: " + "; ".join(parts)


def percent(use: float, limit: float | None) -> int | None:
    """How full a quota is, 0 to 100 (None: no limit; a zero limit with nothing used is empty)."""
    if limit is None:
        return None
    if limit <= 0:
        return 100 if use > 0 else 0
    return min(100, max(0, round(100 * use / limit)))
