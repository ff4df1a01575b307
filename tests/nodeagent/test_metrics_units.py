"""Eru's metric definitions, from two samples: CPU over the host's cores and over the container's
limit, memory over its limit, NIC rates, block-device counters; and Docker's stats, parsed."""

from __future__ import annotations

import pytest

from engine import docker, stats
from nodeagent.metrics import values

HOST = docker.EngineInfo(id="x", name="node1", ncpu=4, mem_total=8 << 30, server_version="27")
INFO = docker.ContainerInfo(
    id="f" * 57 + "abcdefg", name="web_api_a1b2c3", status="running", networks={},
    labels={"ERU": "1", "eru.nodename": "node1", "team": "blue", "tier": "front"}, cpus=0.5,
    memory_limit=64 << 20,
)  # fmt: skip


def sample(read: float, cpu: float, *, rx: int = 0, io_read: int = 0) -> stats.Sample:
    return stats.Sample(
        container_id=INFO.id, read=read, cpu_ns=int(cpu * 1e9), cpu_user_ns=int(cpu * 0.75e9),
        cpu_sys_ns=int(cpu * 0.25e9), memory=16 << 20, memory_max=20 << 20, rss=8 << 20,
        memory_limit=64 << 20, online_cpus=4, nics={"eth0": (0, rx, 0, 0, 0, 0, 0, 0)},
        io={"8:0": (io_read, 0, 0, 0)},
    )  # fmt: skip


def test_two_samples_give_eru_s_gauges() -> None:
    v = values(INFO, sample(100.0, 10.0), sample(110.0, 15.0, rx=5000, io_read=4096), HOST, "node.one")
    assert v.labels == [INFO.id, "node.one", "web", "api", "ERU", "team=blue,tier=front"]
    assert v.statsd_prefix == "ERU.web.api.node-one.abcdefg"
    assert v.gauges["cpu_host_usage"] == pytest.approx(0.5 / 4)  # 5 s of CPU in 10 s, of 4 cores
    assert v.gauges["cpu_container_usage"] == pytest.approx(1.0)  # of its 0.5 limit
    assert v.gauges["cpu_host_user_usage"] == pytest.approx(0.75 * 0.5 / 4)
    assert v.gauges["mem_percent"] == pytest.approx(0.25)
    assert v.gauges["mem_rss_percent"] == pytest.approx(0.125)
    assert v.nics["eth0"]["bytes_recv"] == pytest.approx(500.0)
    assert v.io["8:0"]["io_service_bytes_read"] == 4096
    assert v.io["8:0"]["io_service_bytes_read_per_second"] == pytest.approx(409.6)


def test_a_first_sample_has_memory_but_no_rates_and_a_restart_no_negative_rate() -> None:
    first = values(INFO, None, sample(100.0, 10.0), HOST, "node1")
    assert "cpu_host_usage" not in first.gauges
    assert first.gauges["mem_usage"] == 16 << 20
    again = values(INFO, sample(100.0, 10.0), sample(110.0, 1.0), HOST, "node1")
    assert again.gauges["cpu_host_usage"] == 0.0


def test_docker_s_stats_parse_with_the_page_cache_left_out() -> None:
    raw = {
        "read": "2026-12-01T15:17:53.5Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 537717391, "usage_in_usermode": 5300}, "online_cpus": 2},
        "memory_stats": {"usage": 1003520, "max_usage": 4349952, "limit": 33554432,
                         "stats": {"total_inactive_file": 49152, "total_rss": 57344}},
        "networks": {"eth0": {"rx_bytes": 486, "rx_packets": 5}},
        "blkio_stats": {"io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "Read", "value": 7},
                                                       {"major": 8, "minor": 0, "op": "Write", "value": 9}]},
    }  # fmt: skip
    s = stats.parse("c1", raw)
    assert s is not None
    assert s.memory == 1003520 - 49152
    assert (s.rss, s.memory_max, s.online_cpus, s.cpu_ns) == (57344, 4349952, 2, 537717391)
    assert s.read == pytest.approx(1796138273.5)
    assert s.nics["eth0"][1] == 486
    assert s.io == {"8:0": (7, 9, 0, 0)}
    assert stats.parse("c1", {"cpu_stats": {}, "memory_stats": {}}) is None  # a stopped container
