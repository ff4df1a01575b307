"""Charts as data for templates/clusters/_chart.html: where each sample falls in the SVG's box, the
line broken where samples are missing (so a gap never reads as a straight ramp), ticks on both
axes, a dashed limit line, and the same numbers as rows of a table for those who cannot see the
drawing. Plain arithmetic on datetimes and floats, without Django, so it is tested without a page."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

Point = tuple[datetime, float | None]  # a bucket's start and its value (None: no value in it)
X_TICK_STEPS = [m * 60 for m in (5, 15, 30, 60, 120, 180, 240, 360, 720, 1440)]  # seconds apart
MAX_X_TICKS = 6


@dataclass(frozen=True)
class Box:  # where the lines are drawn, in viewBox units
    left: float
    top: float
    right: float
    bottom: float

    def x(self, share: float) -> float:  # share: 0 at the left edge, 1 at the right
        return round(self.left + (self.right - self.left) * share, 1)

    def y(self, share: float) -> float:  # share: 0 at the bottom, 1 at the top
        return round(self.bottom - (self.bottom - self.top) * share, 1)


PLOT = Box(64, 20, 590, 156)  # in a chart's 600 × 180, room around: y labels, the limit's label, times
SPARK = Box(1, 2, 119, 22)  # in a sparkline's 120 × 24, inside so the stroke is not cut at the edges


@dataclass(frozen=True)
class Tick:
    pos: float  # x (time ticks) or y (value ticks) in the viewBox
    label: str


@dataclass(frozen=True)
class Chart:
    id: str  # unique on the page: the SVG's title is `<id>-title`
    title: str
    segments: list[str]  # one polyline's `points` each
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    limit_y: float | None  # where the dashed limit line is drawn (None: no limit)
    limit_label: str
    rows: list[tuple[str, str]]  # (time, value), oldest first: the text alternative
    summary: str  # the latest and the peak value, for the caption
    width: int = 600
    height: int = 180
    box: Box = PLOT


@dataclass(frozen=True)
class Spark:  # a line without axes; `peak` None: no value recorded
    segments: list[str]
    peak: float | None
    width: int = 120
    height: int = 24


def cores_label(value: float) -> str:
    return "<0.001" if 0 < value < 0.001 else f"{value:.3f}".rstrip("0").rstrip(".")


def bytes_label(value: float) -> str:
    """Binary units, as Docker's memory limits are written ("16M" is 16 MiB)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while abs(value) >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{value:.0f} {units[i]}" if i == 0 or value >= 100 else f"{value:.3g} {units[i]}"


def nice_top(peak: float, *, binary: bool = False) -> float:
    """A round axis top at or above `peak` whose quarters read well: 1, 2, 2.5 or 5 × 10ⁿ, or a
    power of two for bytes. Nothing above zero: 1, so a flat line still has a scale."""
    if peak <= 0:
        return 1.0
    if binary:
        return float(2 ** math.ceil(math.log2(peak)))
    magnitude = 10.0 ** math.floor(math.log10(peak))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= peak * (1 - 1e-9))


def runs(points: Sequence[Point], step: int) -> list[list[tuple[datetime, float]]]:
    """The points in runs of values: a run ends at a None value or a gap longer than two steps."""
    found: list[list[tuple[datetime, float]]] = []
    last: datetime | None = None
    for at, value in points:
        if value is not None:
            if last is None or (at - last).total_seconds() > 2 * step:
                found.append([])
            found[-1].append((at, value))
        last = None if value is None else at
    return found


def _polylines(
    points: Sequence[Point], start: datetime, end: datetime, step: int, top: float, box: Box
) -> list[str]:
    """Each run as a polyline's points; a lone point is given twice (round caps draw it as a dot)."""
    span = (end - start).total_seconds() or 1.0

    def xy(at: datetime, value: float) -> str:
        return f"{box.x((at - start).total_seconds() / span)},{box.y(min(value, top) / top)}"

    return [" ".join(xy(*p) for p in (run if len(run) > 1 else run * 2)) for run in runs(points, step)]


def _x_ticks(start: datetime, end: datetime, tz: tzinfo, box: Box = PLOT) -> list[Tick]:
    """HH:MM at round clock times, no more than MAX_X_TICKS of them."""
    t0, t1 = start.timestamp(), end.timestamp()
    every = next((s for s in X_TICK_STEPS if (t1 - t0) / s <= MAX_X_TICKS), X_TICK_STEPS[-1])
    ticks, t = [], math.ceil(t0 / every) * every
    while t <= t1:
        label = datetime.fromtimestamp(t, tz=UTC).astimezone(tz).strftime("%H:%M")
        ticks.append(Tick(box.x((t - t0) / ((t1 - t0) or 1.0)), label))
        t += every
    return ticks


def line_chart(
    *, id: str, title: str, start: datetime, end: datetime, step: int, points: Sequence[Point],
    fmt: Callable[[float], str], limit: float = 0.0, limit_label: str = "", binary: bool = False,
    tz: tzinfo = UTC,
) -> Chart:  # fmt: skip
    """A line chart of `points` (oldest first, `step` seconds apart) from start to end. The y axis
    tops at `limit` (a limit or a capacity; 0: none) unless a value goes above it, else at a round
    value over the peak; `binary` rounds it to a power of two (bytes)."""
    values = [v for _, v in points if v is not None]
    peak = max(values, default=0.0)
    top = limit if limit > 0 and limit >= peak else nice_top(peak, binary=binary)
    return Chart(
        id=id,
        title=title,
        segments=_polylines(points, start, end, step, top, PLOT),
        y_ticks=[Tick(PLOT.y(f), fmt(top * f)) for f in (0, 0.25, 0.5, 0.75, 1)],
        x_ticks=_x_ticks(start, end, tz),
        limit_y=PLOT.y(limit / top) if limit > 0 else None,
        limit_label=limit_label,
        rows=[(at.astimezone(tz).strftime("%H:%M:%S"), "–" if v is None else fmt(v)) for at, v in points],
        summary=f"latest {fmt(values[-1])}, peak {fmt(peak)}" if values else "",
    )


def sparkline(points: Sequence[Point], *, start: datetime, end: datetime, step: int, top: float) -> Spark:
    """A line without axes, `top` at the top of its box (a capacity; 0: the peak, rounded)."""
    values = [v for _, v in points if v is not None]
    peak = max(values) if values else None
    top = top if top > 0 else nice_top(peak or 0.0)
    return Spark(segments=_polylines(points, start, end, step, top, SPARK), peak=peak)
