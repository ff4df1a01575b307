"""Eru's scheduling engine in plain Python: resource model, cpu plans and deploy strategies.

Imports nothing from Django or the rest of the project. Public face::

    from scheduling import NodeInfo, plan, CPUPlan, cpu_plans, cpu_plan_count, SchedulingError

Modules: ``strategies`` (AUTO, FILL, EACH, GLOBAL, DRAINED), ``waterlevel`` (GLOBAL's counts from a
water level, float sums exact), ``cpuplans`` (bound cpu plans),
``resources`` (requests, node capacity, allocate/release/realloc, remap pool, engine capacity,
Docker settings), ``errors``. ``str(error)`` is always Eru's message.

Where this deliberately differs from Eru (projecteru2/core):

* ties Go breaks by map iteration order (random) are broken by input order; NUMA nodes are
  planned in id order; FILL/EACH sort stably (Go's sort.Slice is stable only up to 12 elements),
  and whole-core plans with equal position sums keep their generation order;
* DRAINED beyond 12 nodes sorts by (capacity, -usage): Go's comparator is not a strict weak order,
  so Go's own result there depends on pdqsort internals (up to 12 nodes Go's order is reproduced);
* inputs on which Go panics or loops are handled: a bound request below one piece is an
  InvalidRequest (Go loops forever), more fragment cores than ``max_fragment_cores`` keep being
  usable (Go panics), negative available memory means no plans (Go panics), any negative
  ``max_fragment_cores`` means no cap; negative capacities/counts and ``nodes_limit`` are rejected;
* a DRAINED total larger than the real capacities reports "need: N, available: M" instead of
  Eru's "BUG: never reach here"; memory limits must be 0 or at least 6 MiB (Docker's minimum); numbers
  must be finite and ``cpu_bind`` a real bool; release never takes usage below 0.
"""

from scheduling.cpuplans import CPUPlan, cpu_plan_count, cpu_plans, request_pieces
from scheduling.errors import AlreadyFilled, InvalidRequest, NotEnoughResource, SchedulingError
from scheduling.resources import (
    CPU_PERIOD,
    MIN_MEMORY_LIMIT,
    UNLIMITED,
    Allocation,
    GiB,
    MiB,
    NodeResources,
    Realloc,
    ResourceRequest,
    allocate,
    deploy_capacity,
    deploy_infos,
    docker_settings,
    docker_update_settings,
    engine_capacity,
    node_deploy_capacity,
    normalize_request,
    realloc,
    release,
    set_capacity,
    share_pool,
)
from scheduling.strategies import AUTO, DRAINED, DUMMY, EACH, FILL, GLOBAL, STRATEGIES, NodeInfo, plan

__all__ = [
    "AUTO",
    "CPU_PERIOD",
    "DRAINED",
    "DUMMY",
    "EACH",
    "FILL",
    "GLOBAL",
    "MIN_MEMORY_LIMIT",
    "STRATEGIES",
    "UNLIMITED",
    "AlreadyFilled",
    "Allocation",
    "CPUPlan",
    "GiB",
    "InvalidRequest",
    "MiB",
    "NodeInfo",
    "NodeResources",
    "NotEnoughResource",
    "Realloc",
    "ResourceRequest",
    "SchedulingError",
    "allocate",
    "cpu_plan_count",
    "cpu_plans",
    "deploy_capacity",
    "deploy_infos",
    "docker_settings",
    "docker_update_settings",
    "engine_capacity",
    "node_deploy_capacity",
    "normalize_request",
    "plan",
    "realloc",
    "release",
    "request_pieces",
    "set_capacity",
    "share_pool",
]
