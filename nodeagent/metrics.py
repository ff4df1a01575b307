"""The agent's metrics, as Eru's (reference/eru.md §5 item 7): every `metrics.step` seconds a one-shot
sample of each running ERU container (in parallel), rates against the previous sample, and then

- Prometheus gauges, Eru's names and labels, on `/metrics` at `api.addr` (a custom collector over the
  last step's values: a container that is gone has no series left);
- statsd gauges, Eru's names, to the `metrics.transfers` address the container's id hashes to;
- the CPU and memory of each to the core (pb.PortalRPC.SetWorkloadsUsage), for its usage history.

The /metrics endpoint has no authentication, as Eru's: it says what runs on the node and how busy it
is, nothing more; `api.addr` decides who reaches it (off unless set; a loopback address keeps it on the
node)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import docker as docker_sdk
import grpc
import statsd  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine import docker, stats
from nodeagent.forward import fnv32a
from nodeagent.status import parse_name
from protocol import core_pb2 as pb
from protocol.client import CoreClient

log = logging.getLogger("nodeagent")
LABELS = ["containerID", "hostname", "appname", "entrypoint", "orchestrator", "labels"]
CPU = ("cpu_host_usage", "cpu_host_sys_usage", "cpu_host_user_usage", "cpu_container_usage",
       "cpu_container_sys_usage", "cpu_container_user_usage")  # fmt: skip
MEMORY = ("mem_usage", "mem_max_usage", "mem_rss", "mem_percent", "mem_rss_percent")
# Eru's NIC gauges (per-second rates) from Docker's counters, and their statsd names.
NIC = {
    "bytes_send": ("tx_bytes", "bytes.sent"), "bytes_recv": ("rx_bytes", "bytes.recv"),
    "packets_send": ("tx_packets", "packets.sent"), "packets_recv": ("rx_packets", "packets.recv"),
    "err_in": ("rx_errors", "err.in"), "err_out": ("tx_errors", "err.out"),
    "drop_in": ("rx_dropped", "drop.in"), "drop_out": ("tx_dropped", "drop.out"),
}  # fmt: skip
IO = ("io_service_bytes_read", "io_service_bytes_write", "io_serviced_read", "io_serviced_write")


@dataclass
class Values:
    """One container's values of the last step."""

    labels: list[str]  # LABELS' values
    statsd_prefix: str
    gauges: dict[str, float] = field(default_factory=dict)
    nics: dict[str, dict[str, float]] = field(default_factory=dict)  # NIC -> Eru's name -> rate
    io: dict[str, dict[str, float]] = field(default_factory=dict)  # device -> name -> value


def values(
    info: docker.ContainerInfo,
    before: stats.Sample | None,
    now: stats.Sample,
    host: docker.EngineInfo,
    hostname: str,
) -> Values:
    """Eru's definitions: cpu_host_* over the host's cores, cpu_container_* over the container's CPU
    limit (the host's cores when it has none); mem_percent over the larger of its memory limit and
    reservation (the host's memory when it has neither). `labels` leaves out ERU and eru.* labels."""
    app, entry = parse_name(info.name)
    extra = ",".join(f"{k}={v}" for k, v in sorted(info.labels.items()) if not k.upper().startswith("ERU"))
    prefix = f"ERU.{app}.{entry}.{hostname.replace('.', '-')}.{info.id[-7:]}"
    out = Values([info.id, hostname, app, entry, "ERU", extra], prefix)
    limit = info.memory_limit or host.mem_total or now.memory_limit
    out.gauges.update(
        mem_usage=now.memory, mem_max_usage=now.memory_max, mem_rss=now.rss,
        mem_percent=now.memory / limit if limit else 0.0, mem_rss_percent=now.rss / limit if limit else 0.0,
    )  # fmt: skip
    if before is None:
        return out
    seconds = now.read - before.read
    host_cores = host.ncpu or now.online_cpus
    own = info.cpus or host_cores
    used = {
        "": stats.rate(before.cpu_ns, now.cpu_ns, seconds) / 1e9,
        "_sys": stats.rate(before.cpu_sys_ns, now.cpu_sys_ns, seconds) / 1e9,
        "_user": stats.rate(before.cpu_user_ns, now.cpu_user_ns, seconds) / 1e9,
    }
    for part, cores in used.items():
        out.gauges[f"cpu_host{part}_usage"] = cores / host_cores
        out.gauges[f"cpu_container{part}_usage"] = cores / own
    for nic, counters in now.nics.items():
        old = before.nics.get(nic)
        if old is not None:
            pairs = zip(stats.NIC_FIELDS, zip(old, counters, strict=True), strict=True)
            rates = {f: stats.rate(a, b, seconds) for f, (a, b) in pairs}
            out.nics[nic] = {name: rates[docker_field] for name, (docker_field, _) in NIC.items()}
    for dev, counters in now.io.items():
        old_io = before.io.get(dev, counters)
        device = out.io[dev] = dict(zip(IO, map(float, counters), strict=True))
        for name, a, b in zip(IO, old_io, counters, strict=True):
            device[f"{name}_per_second"] = stats.rate(a, b, seconds)
    return out


class Metrics(Collector):
    def __init__(
        self,
        *,
        hostname: str,
        step: float,
        client: Callable[[], docker_sdk.DockerClient],
        running: Callable[[], list[docker.ContainerInfo]],
        core: CoreClient | None,
        transfers: list[str],
        dropped: Callable[[], int],
    ) -> None:
        self.hostname, self.step = hostname, step
        self._client, self._running, self._core, self._dropped = client, running, core, dropped
        self._statsd = [_statsd(t) for t in transfers]
        self._host: docker.EngineInfo | None = None
        self._before: dict[str, stats.Sample] = {}
        self._values: dict[str, Values] = {}  # replaced whole each step, read by scrapes
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server: ThreadingHTTPServer | None = None

    def run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            started = time.monotonic()
            try:
                self.collect_once()
            except docker.DockerError as exc:
                log.warning("metrics: dockerd does not answer: %s", exc)
            except Exception:  # a bug here must not end the thread: the next step tries again
                log.exception("metrics: this step failed")
            stopping.wait(max(0.0, self.step - (time.monotonic() - started)))

    def collect_once(self) -> None:
        client = self._client()
        if self._host is None:
            self._host = docker.engine_info(client)
        infos = {i.id: i for i in self._running() if i.status == "running"}
        samples, _ = stats.many(client, infos, workers=16)
        self._values = {
            cid: values(infos[cid], self._before.get(cid), s, self._host, self.hostname)
            for cid, s in samples.items()
        }
        usage = [
            pb.WorkloadUsage(id=cid, cpu=self._cpu(cid, s), memory=s.memory)
            for cid, s in samples.items()
            if cid in self._before
        ]
        self._before = samples
        self._send_statsd()
        if self._core is not None and usage:
            try:
                self._core.set_workloads_usage(self.hostname, usage, time.time())
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # an Eru core: it has no history
                    log.info("the core keeps no usage history (%s): not sending it", exc.details())
                    self._core = None
                else:
                    log.warning("SetWorkloadsUsage failed (%s): %s", exc.code(), exc.details())

    def _cpu(self, cid: str, now: stats.Sample) -> float:
        return stats.cores(self._before[cid], now)

    def _send_statsd(self) -> None:
        if not self._statsd:
            return
        for cid, v in self._values.items():
            client = self._statsd[fnv32a(cid) % len(self._statsd)]
            with client.pipeline() as pipe:
                for name, value in v.gauges.items():
                    pipe.gauge(f"{v.statsd_prefix}.{name}", value)
                for nic, rates in v.nics.items():
                    for name, value in rates.items():
                        pipe.gauge(f"{v.statsd_prefix}.{nic}.{NIC[name][1]}", value)
                for dev, device in v.io.items():
                    for name, value in device.items():
                        pipe.gauge(f"{v.statsd_prefix}.{dev.replace(':', '-')}.{name}", value)

    # --- Prometheus ---------------------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        current = self._values
        for name in (*CPU, *MEMORY):
            family = GaugeMetricFamily(name, f"Eru's {name} of an ERU container", labels=LABELS)
            for v in current.values():
                if name in v.gauges:
                    family.add_metric(v.labels, v.gauges[name])
            yield family
        for name in NIC:
            family = GaugeMetricFamily(name, f"{name} per second, per NIC", labels=[*LABELS, "nic"])
            for v in current.values():
                for nic, rates in v.nics.items():
                    family.add_metric([*v.labels, nic], rates[name])
            yield family
        for name in (*IO, *(f"{n}_per_second" for n in IO)):
            family = GaugeMetricFamily(name, f"{name}, per block device", labels=[*LABELS, "dev"])
            for v in current.values():
                for dev, device in v.io.items():
                    family.add_metric([*v.labels, dev], device[name])
            yield family
        dropped = CounterMetricFamily(
            "eru_agent_log_lines_dropped", "log lines not forwarded (no room while a target was down)"
        )
        dropped.add_metric([], self._dropped())
        yield dropped

    def serve(self, address: str, version: str) -> int:
        """/metrics and /version/ at host:port (port 0: any); the port it listens on."""
        host, _, port = address.rpartition(":")
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 — http.server's name
                if self.path.split("?")[0].rstrip("/") == "/metrics":
                    body, kind = generate_latest(registry), "text/plain; version=0.0.4; charset=utf-8"
                elif self.path.split("?")[0].rstrip("/") == "/version":
                    body, kind = json.dumps({"version": version}).encode(), "application/json"
                else:
                    self.send_error(404, "only /metrics and /version/ here")
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), Handler)  # noqa: S104
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="api", daemon=True).start()
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _statsd(address: str) -> statsd.StatsClient:
    host, _, port = address.rpartition(":")
    return statsd.StatsClient(host or "127.0.0.1", int(port or 8125))
