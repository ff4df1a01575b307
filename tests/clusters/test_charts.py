"""The usage charts: their arithmetic (clusters.charts: the line broken where samples are missing,
ticks, the limit line, an empty series), and the pages that draw them from the recorded history:
the workload's CPU and memory against its limits, the node's against its capacity with its core
map, and a sparkline per node on its pod's page. Nodes are rows and liveness is `ui_alive`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from clusters import charts, services
from clusters.models import Node, Pod, Workload
from tests.factories import WorkloadFactory

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MIB = 1 << 20
Login = Callable[[Any], Client]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def chart(**kwargs: Any) -> charts.Chart:
    """A chart of the hour from T0, in 15 s steps, of cores (unless told otherwise)."""
    args: dict[str, Any] = {"id": "c", "title": "CPU", "start": T0, "end": at(3600), "step": 15}
    return charts.line_chart(**{**args, "fmt": charts.cores_label, **kwargs})


def xy(segment: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in segment.split())]


# --- the arithmetic -----------------------------------------------------------------------------
def test_the_line_breaks_at_missing_values_and_at_gaps_longer_than_two_steps() -> None:
    points = [
        (at(0), 0.1), (at(15), 0.2), (at(30), None),  # no rate for this one: the line stops
        (at(45), 0.2), (at(75), 0.3),  # 30 s apart: two steps, still one line
        (at(150), 0.1), (at(165), 0.1), (at(180), 0.2),  # 75 s after the last: a new line
    ]  # fmt: skip
    c = chart(points=points)
    assert [len(xy(s)) for s in c.segments] == [2, 2, 3]
    assert [y for _, y in xy(c.segments[2])][:2] == [xy(c.segments[0])[0][1]] * 2  # same value, same height
    xs = [x for s in c.segments for x, _ in xy(s)]
    assert xs == sorted(xs)
    assert charts.PLOT.left <= xs[0] < xs[-1] <= charts.PLOT.right
    assert len(c.rows) == len(points)  # every step in the table, the missing one as a dash
    assert c.rows[2] == ("12:00:30", "–")
    assert c.summary == "latest 0.2, peak 0.3"


def test_a_lone_value_is_drawn_as_a_dot() -> None:
    c = chart(points=[(at(0), 0.1), (at(15), None), (at(30), 0.2)])
    assert [len(xy(s)) for s in c.segments] == [2, 2]
    assert xy(c.segments[0])[0] == xy(c.segments[0])[1]


def test_the_axis_tops_at_the_limit_and_the_limit_line_is_drawn_there() -> None:
    c = chart(points=[(at(0), 0.25), (at(15), 0.3)], limit=0.5, limit_label="limit 0.5 cores")
    assert [t.label for t in c.y_ticks] == ["0", "0.125", "0.25", "0.375", "0.5"]
    assert [t.pos for t in c.y_ticks] == sorted((t.pos for t in c.y_ticks), reverse=True)  # up the page
    assert c.limit_y == charts.PLOT.top == c.y_ticks[-1].pos
    assert xy(c.segments[0])[0][1] == c.y_ticks[2].pos  # 0.25 of 0.5: half-way up
    assert c.limit_label == "limit 0.5 cores"


def test_without_a_limit_the_axis_tops_at_a_round_value_over_the_peak() -> None:
    c = chart(points=[(at(0), 0.3)])
    assert c.limit_y is None
    assert c.y_ticks[-1].label == "0.5"
    over = chart(points=[(at(0), 0.3)], limit=0.2)  # above its limit (a quota is averaged): the peak wins
    assert over.y_ticks[-1].label == "0.5"
    assert over.limit_y == pytest.approx(charts.PLOT.y(0.4))
    memory = chart(points=[(at(0), 12.5 * MIB)], fmt=charts.bytes_label, binary=True)
    assert [t.label for t in memory.y_ticks] == ["0 B", "4 MiB", "8 MiB", "12 MiB", "16 MiB"]


def test_time_ticks_are_round_clock_times() -> None:
    hour = chart(start=at(7), end=at(3607), points=[])
    assert [t.label for t in hour.x_ticks] == ["12:15", "12:30", "12:45", "13:00"]
    assert all(charts.PLOT.left <= t.pos <= charts.PLOT.right for t in hour.x_ticks)
    day = chart(start=at(60), end=at(86460), step=300, points=[])
    assert [t.label for t in day.x_ticks] == ["16:00", "20:00", "00:00", "04:00", "08:00", "12:00"]


def test_an_empty_series_has_axes_and_no_line() -> None:
    c = chart(points=[], limit=2.0, limit_label="capacity 2 cores")
    assert c.segments == []
    assert c.rows == []
    assert c.summary == ""
    assert c.y_ticks[-1].label == "2"
    assert c.limit_y == charts.PLOT.top
    assert chart(points=[(at(0), None)]).segments == []


def test_labels_and_round_tops() -> None:
    assert [charts.cores_label(v) for v in (0, 0.0004, 0.025, 2, 12.5)] == [
        "0",
        "<0.001",
        "0.025",
        "2",
        "12.5",
    ]
    labels = [charts.bytes_label(v) for v in (0, 512, 4 * MIB, 12.5 * MIB, 150 * MIB, 1.5 * 1024 * MIB)]
    assert labels == ["0 B", "512 B", "4 MiB", "12.5 MiB", "150 MiB", "1.5 GiB"]
    assert [charts.nice_top(v) for v in (0, 0.08, 0.3, 1, 3.2)] == [1, 0.1, 0.5, 1, 5]
    assert charts.nice_top(100 * MIB, binary=True) == 128 * MIB


def test_a_sparkline_tops_at_the_capacity() -> None:
    s = charts.sparkline([(at(0), 1.0), (at(15), 2.0)], start=T0, end=at(3600), step=15, top=2.0)
    assert s.peak == 2.0
    [(x0, y0), (_, y1)] = xy(s.segments[0])
    assert (x0, y1) == (charts.SPARK.left, charts.SPARK.top)
    assert y0 == charts.SPARK.y(0.5)
    assert charts.sparkline([], start=T0, end=at(3600), step=15, top=2.0).peak is None


# --- the pages ----------------------------------------------------------------------------------
def url(name: str, *args: Any) -> str:
    return reverse(f"clusters:{name}", args=args)


def figure(body: str, chart_id: str) -> str:
    match = re.search(rf'<figure class="chart" id="{chart_id}">(.*?)</figure>', body, re.S)
    assert match, f"no chart {chart_id}"
    return match.group(1)


def polylines(svg: str, cls: str = "series") -> list[int]:
    """How many points each polyline of the drawing has."""
    return [len(p.split()) for p in re.findall(rf'<polyline class="{cls}" points="([^"]*)"', svg)]


def table_rows(fig: str) -> int:
    return len(re.findall(r"<tr><td>", fig))


def record(w: Workload, samples: list[tuple[float | None, int]]) -> None:
    """The samples, oldest first, one 15 s step apart and the last one now."""
    now = time.time()
    for k, (cpu, memory) in enumerate(reversed(samples)):
        services.usage_record(
            actor=services.SYSTEM,
            node=w.node,
            usage={w.container_id: services.Use(cpu, memory)},
            at=now - k * 15,
        )


@pytest.fixture
def n1(ui_pod: Pod, ui_node: Callable[..., Node], ui_alive: set[str]) -> Node:
    """An up node of 2 cores of 100 pieces and 4 GiB, half of core 0 held by a bound workload."""
    ui_alive.add("n1")
    return ui_node("n1", used_cpu_map={"0": 50}, used_cpu=0.5)


@pytest.fixture
def w(n1: Node) -> Workload:
    return WorkloadFactory(node=n1, container_id="a" * 64, cpu_limit=0.5, memory_limit=64 * MIB)


def test_the_workload_page_draws_cpu_and_memory_against_its_limits(
    w: Workload, ui_client: Login, admin_user: Any
) -> None:
    record(w, [(None, 10 * MIB), (0.1, 20 * MIB), (0.2, 30 * MIB), (0.3, 40 * MIB), (0.25, 35 * MIB)])
    body = ui_client(admin_user).get(url("workload-detail", w.pk)).content.decode()
    cpu, memory = figure(body, "usage-cpu"), figure(body, "usage-memory")
    assert polylines(cpu) == [4]  # the first sample had no rate yet
    assert polylines(memory) == [5]
    assert "limit 0.5 cores" in cpu
    assert "limit 64 MiB" in memory
    assert 'role="img" aria-labelledby="usage-cpu-title"' in cpu
    assert '<title id="usage-cpu-title">CPU (cores): latest 0.25, peak 0.3, limit 0.5 cores</title>' in cpu
    assert 'class="limit"' in cpu
    assert table_rows(cpu) == table_rows(memory) == 5
    assert 'aria-current="true">last hour<' in body
    assert 'hx-trigger="every 15s' in body


def test_the_usage_card_refreshes_alone_and_switches_to_the_day(
    w: Workload, ui_client: Login, admin_user: Any
) -> None:
    record(w, [(0.1, MIB), (0.2, MIB), (0.3, MIB)])
    client, path = ui_client(admin_user), url("workload-detail", w.pk)
    partial = client.get(path, headers={"HX-Request": "true", "HX-Target": "usage"}).content.decode()
    assert partial.strip().startswith('<section id="usage"')
    assert "<html" not in partial
    assert "Spec" not in partial  # only the card
    assert polylines(figure(partial, "usage-cpu")) == [3]
    day = client.get(path, {"window": "day"}, headers={"HX-Request": "true", "HX-Target": "usage"})
    body = day.content.decode()
    buckets = len(w.usage.filter(step=300))  # the three samples in one or two 5 min steps
    assert table_rows(figure(body, "usage-cpu")) == buckets
    assert 'aria-current="true">last day<' in body
    assert f'hx-get="{path}?window=day"' in body  # its poll keeps the window
    w.delete()
    gone = client.get(path, headers={"HX-Request": "true", "HX-Target": "usage"})
    assert gone.status_code == 286  # a page still polling stops


def test_a_workload_without_usage_says_so(w: Workload, ui_client: Login, admin_user: Any) -> None:
    body = ui_client(admin_user).get(url("workload-detail", w.pk)).content.decode()
    every = settings.ERU_USAGE_INTERVAL
    assert f"No usage recorded yet: the core polls the node&#x27;s containers every {every} s." in body
    assert '<figure class="chart"' not in body


def test_the_node_page_draws_its_usage_against_its_capacity_and_its_cores(
    w: Workload, ui_client: Login, admin_user: Any
) -> None:
    record(w, [(0.5, 100 * MIB), (1.5, 200 * MIB), (1.0, 300 * MIB)])
    body = ui_client(admin_user).get(url("node-detail", "n1")).content.decode()
    cpu, memory = figure(body, "usage-cpu"), figure(body, "usage-memory")
    assert polylines(cpu) == polylines(memory) == [3]
    assert "capacity 2 cores" in cpu
    assert "capacity 4 GiB" in memory
    cells = re.findall(
        r'<li class="core[^"]*" style="--fill: (\d+)%">\s*<span class="core-id">core (\w+)</span> '
        r'<span class="core-use">(\d+/\d+)</span>',
        body,
    )
    assert cells == [("50", "0", "50/100"), ("0", "1", "0/100")]
    assert 'aria-label="Bound pieces per core' in body
    partial = ui_client(admin_user).get(
        url("node-detail", "n1"), headers={"HX-Request": "true", "HX-Target": "usage"}
    )
    assert partial.content.decode().strip().startswith('<section id="usage"')


def test_the_pod_page_has_a_cpu_sparkline_per_node(
    w: Workload, ui_node: Callable[..., Node], ui_client: Login, admin_user: Any
) -> None:
    ui_node("n2")
    record(w, [(0.2, MIB), (0.4, MIB), (0.3, MIB)])
    body = ui_client(admin_user).get(url("pod-detail", "eru")).content.decode()
    row = re.search(r'<tr id="node-n1">(.*?)</tr>', body, re.S)
    assert row
    assert 'aria-label="CPU last hour: 0.4 of 2 cores at most"' in row.group(1)
    assert [
        len(p.split())
        for p in re.findall(r'<svg class="spark".*?<polyline points="([^"]*)"', row.group(1), re.S)
    ] == [3]
    other = re.search(r'<tr id="node-n2">(.*?)</tr>', body, re.S)
    assert other
    assert 'aria-label="CPU last hour: no usage recorded"' in other.group(1)
    marked = ui_client(admin_user).post(url("node-down", "n1"), headers={"HX-Request": "true"})
    assert (
        'aria-label="CPU last hour: 0.4 of 2 cores at most"' in marked.content.decode()
    )  # the row swapped in
