"""What erucli sends as a node's resources, taken apart, and a node's resources as Eru's NodeResource.

erucli's `node add` and `node set` send `resources` as JSON per resource plugin, with dashed keys:
`{"cpumem": {"cpu": 4, "share": "100", "memory": "8G", "numa-cpu": […], "numa-memory": […]},
"storage": {…}}` (`node add` sends cpu as a number, `node set` as a string: "4" or "0:100,1:100").
This project has the cpumem plugin only: a storage entry that asks nothing (absent, {}, zeros, empty
lists) is taken as nothing asked; one that asks something is refused, as is any other plugin, NUMA
(the project does not place by NUMA node) and a cpumem key it does not know. Every refusal is a field
error naming the field and the limit; nothing is changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.grpc_server.messages import PLUGIN
from clusters import selectors
from clusters.errors import invalid
from clusters.models import Node
from protocol import core_pb2 as pb

CPUMEM_KEYS = ("cpu", "share", "memory", "numa-cpu", "numa-memory")
MAX_SHARE = 10_000  # pieces per core (the REST API's limit)
NO_STORAGE = "this project has no storage plugin (only cpumem: cpu and memory)"


@dataclass
class CpuMem:
    """The cpumem entry: None where nothing is asked (detect, or keep)."""

    cpu: int | str | None = None
    share: int | None = None
    memory: int | str | None = None


def _asks(value: Any) -> bool:
    """Whether a storage value asks for something: not 0, "0", "", "0G", [], {}, null."""
    if value in (None, "", 0, [], {}) or value is False:
        return False
    if isinstance(value, str):
        number = value.strip().rstrip("bBkKmMgGtTiI").strip()
        try:
            return float(number or 0) != 0
        except ValueError:
            return True  # a path, a device: something asked
    if isinstance(value, list):
        return any(_asks(v) for v in value)
    if isinstance(value, Mapping):
        return any(_asks(v) for v in value.values())
    return True


def _entry(raw: bytes, plugin: str) -> dict[str, Any]:
    field = f"resources.{plugin}"
    try:
        entry = json.loads(raw.decode() or "{}") if raw else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid(field, f"{field}: not JSON ({exc})") from exc
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise invalid(field, f"{field}: a JSON object of the plugin's fields, not {type(entry).__name__}")
    return entry


def parse(resources: Mapping[str, bytes], *, adding: bool) -> CpuMem:
    """The cpumem request of AddNode (`adding`) or SetNode. Field errors name `resources.<plugin>.<key>`."""
    for plugin in sorted(resources):
        if plugin in (PLUGIN, "storage"):
            continue
        raise invalid(
            f"resources.{plugin}",
            f"resources.{plugin}: no such resource plugin here; this project has cpumem only",
        )
    storage = _entry(resources.get("storage", b""), "storage")
    asked = sorted(k for k, v in storage.items() if _asks(v))
    if asked:
        raise invalid(f"resources.storage.{asked[0]}", f"resources.storage.{asked[0]}: {NO_STORAGE}")
    entry = _entry(resources.get(PLUGIN, b""), PLUGIN)
    unknown = sorted(k for k in entry if k not in CPUMEM_KEYS)
    if unknown:
        field = f"resources.cpumem.{unknown[0]}"
        raise invalid(field, f"{field}: not a cpumem field of a node (known: {', '.join(CPUMEM_KEYS)})")
    for numa in ("numa-cpu", "numa-memory"):
        if entry.get(numa) not in (None, [], "", {}):
            raise invalid(
                f"resources.cpumem.{numa}",
                f"resources.cpumem.{numa}: this project does not place by NUMA node; leave it out",
            )
    share = _share(entry.get("share"))
    cpu = _cpu(entry.get("cpu"), adding=adding)
    if share is not None and not adding:
        if not isinstance(cpu, int):
            raise invalid(
                "resources.cpumem.share",
                "resources.cpumem.share: on a set, only with cpu as a number of cores (N cores of share "
                "pieces each); a node's share base stays as it was registered",
            )
        cpu, share = ",".join(f"{i}:{share}" for i in range(cpu)), None
    return CpuMem(cpu=cpu, share=share, memory=_memory(entry.get("memory")))


def _share(value: Any) -> int | None:
    field = "resources.cpumem.share"
    if value in (None, "", 0, "0"):
        return None
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        share = int(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise invalid(field, f"{field}: {str(value)[:40]!r} is not a number of pieces per core") from None
    if not 1 <= share <= MAX_SHARE:
        raise invalid(field, f"{field}: {share} pieces per core: give 1 to {MAX_SHARE}")
    return share


def _cpu(value: Any, *, adding: bool) -> int | str | None:
    """AddNode: a number of cores (0: detect). SetNode: that, or a cpu map "0:100,1:100" (delta: may
    be negative), left to clusters.services.node_set to check."""
    field = "resources.cpumem.cpu"
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(field, f"{field}: {str(value)[:40]!r} is not a number of cores or a cpu map")
    if isinstance(value, int) and value < 0:
        raise invalid(field, f"{field}: {value} cores: a node needs at least 1 core")
    if isinstance(value, str) and adding:
        raise invalid(field, f"{field}: {value[:40]!r}: on node add, give a number of cores (at least 1)")
    return value


def _memory(value: Any) -> int | str | None:
    field = "resources.cpumem.memory"
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(field, f"{field}: {str(value)[:40]!r} is not bytes or a size like 512M or 8G")
    return value


def resource_message(node: Node, check: Mapping[str, Any] | None = None) -> pb.NodeResource:
    """Eru's NodeResource: capacity and usage per plugin (as GetNode has them) and the differences
    between the usage recorded and the one counted from the node's workloads."""
    if check is None:
        check = selectors.node_resource_check(node)
    resources = node.resource_json()
    return pb.NodeResource(
        name=node.name,
        diffs=[str(d) for d in check["diffs"]],
        resource_capacity=json.dumps({PLUGIN: resources["capacity"]}),
        resource_usage=json.dumps({PLUGIN: resources["usage"]}),
    )
