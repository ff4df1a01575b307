"""A container's resource use, as Docker's one-shot stats give it: one sample carries counters (CPU
nanoseconds, bytes and packets per NIC, bytes and operations per block device) and gauges (memory).
One-shot stats carry no previous CPU sample, so a rate comes from two consecutive samples (rate()).
Samples of many containers are taken in parallel (many())."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker

from engine.docker import _ERRORS, DockerError, _classify, time_cursor

NIC_FIELDS = (
    "tx_bytes",
    "rx_bytes",
    "tx_packets",
    "rx_packets",
    "rx_errors",
    "tx_errors",
    "rx_dropped",
    "tx_dropped",
)
IO_FIELDS = ("read_bytes", "write_bytes", "read_ops", "write_ops")


@dataclass(frozen=True, slots=True)
class Sample:
    container_id: str
    read: float  # Docker's time of the sample (unix seconds)
    cpu_ns: int  # CPU time used since the container started, all cores
    cpu_user_ns: int
    cpu_sys_ns: int
    memory: int  # in use, the page cache it could give back left out (as `docker stats`)
    memory_max: int  # the most in use so far (cgroup v1; 0 where Docker does not say)
    rss: int
    memory_limit: int  # its limit, or the host's memory when it has none
    online_cpus: int
    nics: dict[str, tuple[int, ...]] = field(default_factory=dict)  # NIC -> NIC_FIELDS
    io: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # "major:minor" -> IO_FIELDS


def sample(client: docker.DockerClient, container_id: str) -> Sample | None:
    """One one-shot sample of a running container; None when it is gone or does not run."""
    try:
        raw = client.api.stats(container_id, stream=False, one_shot=True)
    except docker.errors.NotFound:
        return None
    except _ERRORS as exc:
        raise _classify(exc, "stats") from exc
    return parse(container_id, raw)


def parse(container_id: str, raw: dict[str, Any]) -> Sample | None:
    cpu = raw.get("cpu_stats") or {}
    usage = cpu.get("cpu_usage") or {}
    memory = raw.get("memory_stats") or {}
    if not usage.get("total_usage") or not memory:  # a stopped container's stats are empty
        return None
    seconds, nanos = time_cursor(raw.get("read", ""))
    detail = memory.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", 0))  # v1, v2
    return Sample(
        container_id=container_id,
        read=seconds + nanos / 1e9,
        cpu_ns=int(usage["total_usage"]),
        cpu_user_ns=int(usage.get("usage_in_usermode") or 0),
        cpu_sys_ns=int(usage.get("usage_in_kernelmode") or 0),
        memory=max(0, int(memory.get("usage") or 0) - int(cache)),
        memory_max=int(memory.get("max_usage") or 0),
        rss=int(detail.get("total_rss", detail.get("rss", detail.get("anon", 0))) or 0),
        memory_limit=int(memory.get("limit") or 0),
        online_cpus=int(cpu.get("online_cpus") or len(usage.get("percpu_usage") or ()) or 1),
        nics={
            nic: tuple(int(v.get(f) or 0) for f in NIC_FIELDS)
            for nic, v in (raw.get("networks") or {}).items()
        },
        io=_io(raw.get("blkio_stats") or {}),
    )


def _io(blkio: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    devices: dict[str, list[int]] = {}
    for key, base in (("io_service_bytes_recursive", 0), ("io_serviced_recursive", 2)):
        for entry in blkio.get(key) or ():
            op = str(entry.get("op", "")).lower()
            if op in ("read", "write"):
                dev = devices.setdefault(f"{entry.get('major', 0)}:{entry.get('minor', 0)}", [0, 0, 0, 0])
                dev[base + (op == "write")] += int(entry.get("value") or 0)
    return {dev: (v[0], v[1], v[2], v[3]) for dev, v in devices.items()}


def many(
    client: docker.DockerClient, container_ids: Iterable[str], *, workers: int = 32
) -> tuple[dict[str, Sample], dict[str, str]]:
    """Samples of the containers, taken in parallel: (samples by id, errors by id). A container that
    is gone or stopped is in neither."""
    ids = list(container_ids)
    samples: dict[str, Sample] = {}
    errors: dict[str, str] = {}

    def one(cid: str) -> None:
        try:
            got = sample(client, cid)
        except DockerError as exc:
            errors[cid] = str(exc)
            return
        if got is not None:
            samples[cid] = got

    if ids:
        with ThreadPoolExecutor(
            max_workers=max(1, min(workers, len(ids))), thread_name_prefix="stats"
        ) as pool:
            list(pool.map(one, ids))
    return samples, errors


def rate(before: int, after: int, seconds: float) -> float:
    """A counter's change per second (0 when it went back: the container restarted)."""
    return (after - before) / seconds if seconds > 0 and after >= before else 0.0


def cores(before: Sample, after: Sample) -> float:
    """CPU used between two samples, in cores (1.0: one core busy the whole time)."""
    return cores_between(before.cpu_ns, before.read, after)


def cores_between(cpu_ns: int, read: float, after: Sample) -> float:
    """CPU used since an earlier sample's counter and time, in cores."""
    return rate(cpu_ns, after.cpu_ns, after.read - read) / 1e9
