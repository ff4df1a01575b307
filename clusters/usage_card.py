"""The usage card of the workload and node pages: CPU and memory over the last hour (15 s steps) or
day (5 min steps), against a limit or capacity, as charts (clusters.charts) with their text
alternative; the card refreshes itself (htmx) and switches its window in place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from clusters import charts, selectors
from clusters.models import Node
from clusters.services.usage import COARSE, FINE
from clusters.users import HtmxHttpRequest

# The windows: the steps each draws and how far back it goes.
WINDOWS = {"hour": (FINE, timedelta(hours=1)), "day": (COARSE, timedelta(days=1))}
WINDOW_LABELS = [("hour", "last hour"), ("day", "last day")]


@dataclass(frozen=True)
class UsageCard:
    """A page's usage card: the window it shows, its charts, the URL its poll and its window switch
    ask, and what to say while nothing is recorded."""

    url: str
    window: str
    charts: list[charts.Chart]
    empty_note: str

    @property
    def windows(self) -> list[tuple[str, str]]:
        return WINDOW_LABELS

    @property
    def recorded(self) -> bool:
        return any(c.rows for c in self.charts)


def window_of(request: HtmxHttpRequest) -> str:
    window = request.GET.get("window", "")
    return window if window in WINDOWS else "hour"


def usage_card(
    request: HtmxHttpRequest, url: str, read: Callable[[int, datetime], list[selectors.UsageRow]], *,
    cpu: float, memory: float, line: str, empty_note: str,
) -> UsageCard:  # fmt: skip
    """CPU and memory over the window the request asks for, from `read(step, since)` (a selector's
    rows); `cpu` and `memory` are where the dashed line is drawn (0: none), `line` says what it is."""
    window = window_of(request)
    step, span = WINDOWS[window]
    end = timezone.now()
    start = end - span
    rows = read(step, start)
    common: dict[str, Any] = {"start": start, "end": end, "step": step, "tz": timezone.get_current_timezone()}
    cpu_chart = charts.line_chart(
        id="usage-cpu", title="CPU (cores)", points=[(at, c) for at, c, _ in rows], fmt=charts.cores_label,
        limit=cpu, limit_label=f"{line} {charts.cores_label(cpu)} cores", **common,
    )  # fmt: skip
    memory_chart = charts.line_chart(
        id="usage-memory", title="Memory", points=[(at, float(m)) for at, _, m in rows],
        fmt=charts.bytes_label, limit=memory, limit_label=f"{line} {charts.bytes_label(memory)}", binary=True,
        **common,
    )  # fmt: skip
    return UsageCard(url=url, window=window, charts=[cpu_chart, memory_chart], empty_note=empty_note)


def empty_note(node: Node) -> str:
    if node.agent:
        return "No usage recorded yet: the node's agent reports it every metrics step."
    return (
        f"No usage recorded yet: the core polls the node's containers every {settings.ERU_USAGE_INTERVAL} s."
    )
