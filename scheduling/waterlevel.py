"""GLOBAL from a water level: Eru's one-heap-pop-per-instance result, without the pops (issue 16).

Eru's ``GlobalPlan`` pops the node with the lowest ``usage + rate`` ``need`` times; after a pop it
does ``usage += rate`` in float64. Node ``i``'s ``j``-th instance therefore goes in at the key
``s_i(j) = u ⊕ r ⊕ … ⊕ r`` (``j`` rounded additions), a nondecreasing sequence, and the pops take
the ``need`` smallest ``(s_i(j), i)`` over all nodes and ``j <= capacity_i`` (ties by input order,
as in :func:`scheduling.strategies.global_plan`). This module finds them without popping:

1. a continuous water level ``G(t) = sum clamp((t - u_i) / r_i, 0, capacity_i)`` (less half a key
   per rising node, for the floors), from prefix sums over a strided sample of the nodes sorted by
   where they start rising and where they are full, says where about ``need`` keys lie;
2. one pass counts each node's keys ``<= t`` there exactly: ``floor((t - u) / r)`` clamped to the
   capacity wherever that is provably the float count, else (``t`` lies within rounding of one of
   the node's keys) :func:`exact_count` walks the float additions; a Newton step from the exact
   total puts a second pass on the other side of ``need``, so ``t_lo < t_hi`` bracket the level;
3. the few hundred keys between ``t_lo`` and ``t_hi`` are sorted; the run of nearly equal ones
   around the ``need``-th is re-keyed with the exact float sums and taken by (key, input order).

O(nodes) per pass, two passes in general, no term in ``need``. :func:`exact_count` and
:func:`exact_key` compute the rounded sums binade by binade: within one binade a float addition of
``r`` adds a constant multiple of the binade's ulp (after the first step, even for ties-to-even),
so a run of additions is one multiplication.
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import accumulate, compress, islice, repeat
from operator import add, ge, gt, itemgetter, mul, ne, sub

__all__ = ["exact_count", "exact_key", "level_counts"]

_INF = math.inf
# Inputs the fast path takes: finite, usage >= 0, rate 0 or in [_TINY, _HUGE], keys below _HUGE.
_TINY = 1e-150
_HUGE = 1e150
# Scale of the float error bounds below (_band; the window's gap): 16 times the 2^-53 of a rounding.
_SLACK = 2.0**-49
# Beyond this, the rounding band of the integer floor is too wide to trust: count every node exactly.
_WIDE_BAND = 0.25
# The window between the bracket ends is enumerated key by key up to this many keys (or 4 per node).
_WINDOW = 1 << 16
_SIGN = 1 << 63
# The water level is first sought on a strided sample of about this many nodes.
_SAMPLE = 2048
# Brackets holding more keys than this (or 4 spreads) are narrowed by secant steps before sorting.
_SMALL_WINDOW = 1024
# The sample visits the nodes i * _MIXER mod m: a prime, so that nodes listed in a repeating
# pattern (racks, node sizes) are sampled evenly.
_MIXER = 2_147_483_647


def _band(x: float, ur: float) -> float:
    """The rounding band around x = (t - u) / r, in units of r, for x and u / r at most these.

    Computing x costs 4 roundings of at most 2^-53 (x + u / r); the j <= x + 1 additions of Eru's
    ``usage += rate`` drift by at most j * 2^-53 * s(j) <= (x + 1) * 2^-53 * (t + 2r), i.e.
    (x + 1) * (x + u / r + 2) * 2^-53 in units of r. Half the band is over 8 times their sum.
    """
    return (x + 4.0) * (x + 2.0 * ur + 4.0) * _SLACK


def _ordinal(x: float) -> int:
    """Floats to integers, order kept (adjacent floats are adjacent integers)."""
    bits: int = struct.unpack("<q", struct.pack("<d", x))[0]
    return bits if bits >= 0 else -(bits + _SIGN)


def _from_ordinal(n: int) -> float:
    bits = n if n >= 0 else -n - _SIGN
    value: float = struct.unpack("<d", struct.pack("<q", bits))[0]
    return value


def _between(a: float, b: float) -> float | None:
    """A float halfway (in float order) strictly between ``a < b``; None when they are adjacent."""
    lo, hi = _ordinal(a), _ordinal(b)
    if hi - lo < 2:
        return None
    return _from_ordinal((lo + hi) // 2)


def exact_count(u: float, r: float, cap: int, limit: float) -> tuple[int, float]:
    """How many of ``s(1..cap)`` are ``<= limit``, and the last of them (``u`` if none).

    ``s(j) = u ⊕ r ⊕ … ⊕ r`` with ``j`` float additions, ``u >= 0``, ``r > 0``, both finite.
    Within the binade ``[2^(e-1), 2^e)`` (ulp ``q``) every sum that stays in the binade is
    ``x + d`` with ``d`` the same multiple of ``q`` for every ``x`` that is itself such a sum
    (ties-to-even makes it even; without a tie, ``d`` is ``r`` rounded to ``q``), so after one step
    into a binade the rest of it is an arithmetic run, taken in one go.
    """
    x = u
    j = 0
    while j < cap:
        y = x + r
        if y > limit:
            break
        j += 1
        x = y  # s(j)
        if j == cap:
            break
        e = math.frexp(x)[1]
        top = math.ldexp(1.0, e)
        z = x + r  # s(j + 1)
        if z >= top or z > limit:
            continue
        w = z + r  # s(j + 2)
        if w >= top:
            continue
        d = w - z  # exact: both in one binade
        q = math.ldexp(1.0, max(e - 53, -1074))
        room = cap - j - 1  # keys after s(j + 1)
        if d == 0.0:  # r is below half an ulp: the sum is stuck here
            k = room
        else:
            step = int(d / q)
            k = min(room, (int((top - z) / q) - 1) // step)  # z + k*d < top
            if limit < top:  # limit >= z, so it is a multiple of q too
                k = min(k, (int(limit / q) - int(z / q)) // step)  # z + k*d <= limit
        j += 1 + k
        x = z + k * d  # exact: k*d < top - z is a multiple of q below 2**53 * q
    return j, x


def exact_key(u: float, r: float, j: int) -> float:
    """``s(j)``: the key at which Eru's GLOBAL puts the node's ``j``-th new instance (``j >= 1``)."""
    return exact_count(u, r, j, _INF)[1]


class _Fleet:
    """The nodes of one GLOBAL plan, split by rate, and a sample of them for the water level."""

    def __init__(self, us: Sequence[float], rs: Sequence[float], caps: Sequence[int]) -> None:
        if min(rs) > 0.0:
            self.pos: Sequence[int] = range(len(us))
            self.u, self.r, self.cap = us, rs, caps
            self.zpos: Sequence[int] = ()
            self.zu: Sequence[float] = ()
            self.zcap: Sequence[int] = ()
        else:
            self.pos = [i for i, r in enumerate(rs) if r > 0.0]
            self.u = [us[i] for i in self.pos]
            self.r = [rs[i] for i in self.pos]
            self.cap = [caps[i] for i in self.pos]
            self.zpos = [i for i, r in enumerate(rs) if r == 0.0]
            self.zu = [us[i] for i in self.zpos]
            self.zcap = [caps[i] for i in self.zpos]
        self.m = len(self.u)
        self.ir = [1.0 / r for r in self.r]
        self.ur = list(map(mul, self.u, self.ir))
        self.umax = max(us)
        self.rmax = max(rs)
        urmax = max(self.ur, default=0.0)
        capmax = max(self.cap, default=0)
        self.end_max = self.umax + capmax * self.rmax if self.m else 0.0  # >= every u + cap * r
        # Nodes whose rounding band (see counts) can reach _WIDE_BAND are always walked in floats;
        # the band of the others is bounded by their own maxima.
        self.walk: list[int] = []
        if _band(capmax + 2.0, urmax) >= _WIDE_BAND:
            self.walk = [
                i
                for i, (c, b) in enumerate(zip(self.cap, self.ur, strict=True))
                if _band(c + 2.0, b) >= _WIDE_BAND
            ]
            floors = set(range(self.m)).difference(self.walk)
            urmax = max((self.ur[i] for i in floors), default=0.0)
            capmax = max((self.cap[i] for i in floors), default=0)
            self.irmax = max((self.ir[i] for i in floors), default=0.0)
        else:
            self.irmax = max(self.ir, default=0.0)
        self.urmax, self.capmax = urmax, capmax
        self.tmax = 4.0 * (self.end_max + self.umax) + 1.0  # above every float key
        # The continuous level G(t) of a strided sample, from prefix sums over the sample sorted by
        # where each node starts rising (u) and where it is full (u + cap * r).
        picks = [i * _MIXER % self.m for i in range(min(self.m, _SAMPLE))]
        su, sr, scap = [[v[i] for i in picks] for v in (self.u, self.r, self.cap)]
        sir, sur = [[v[i] for i in picks] for v in (self.ir, self.ur)]
        self.scale = self.m / len(su) if su else 0.0
        ends = [u + c * r for u, c, r in zip(su, scap, sr, strict=True)]
        by_start = sorted(range(len(su)), key=su.__getitem__)
        by_end = sorted(range(len(su)), key=ends.__getitem__)
        self.starts = [su[i] for i in by_start]
        self.s_ir = [0.0, *accumulate(map(sir.__getitem__, by_start))]
        self.s_ur = [0.0, *accumulate(map(sur.__getitem__, by_start))]
        self.ends = [ends[i] for i in by_end]
        self.e_ir = [0.0, *accumulate(map(sir.__getitem__, by_end))]
        self.e_ur = [0.0, *accumulate(map(sur.__getitem__, by_end))]
        self.e_cap = [0, *accumulate(map(scap.__getitem__, by_end))]
        zpicks = [i * _MIXER % len(self.zu) for i in range(min(len(self.zu), _SAMPLE))]
        szu, szcap = [self.zu[i] for i in zpicks], [self.zcap[i] for i in zpicks]
        self.zscale = len(self.zu) / len(szu) if szu else 0.0
        by_zero = sorted(range(len(szu)), key=szu.__getitem__)
        self.zkeys = [szu[i] for i in by_zero]
        self.z_cap = [0, *accumulate(map(szcap.__getitem__, by_zero))]

    def expected(self, t: float) -> tuple[float, float]:
        """About how many keys are ``<= t`` and how fast that grows with ``t``, from the sample:
        G(t), less half a key per node rising through t (the floors), and G's slope."""
        a = bisect_right(self.starts, t)
        b = bisect_right(self.ends, t)
        slope = self.s_ir[a] - self.e_ir[b]
        g = t * slope - (self.s_ur[a] - self.e_ur[b]) + self.e_cap[b] - (a - b) / 2
        zg = self.z_cap[bisect_right(self.zkeys, t)]
        return g * self.scale + zg * self.zscale, slope * self.scale

    def level(self, target: float) -> float:
        """A ``t`` where :meth:`expected` crosses ``target`` (bisection in float order, so at most
        64 steps over any range; it need not be monotone)."""
        lo, hi = -1.0, self.tmax
        while (mid := _between(lo, hi)) is not None:
            if self.expected(mid)[0] < target:
                lo = mid
            else:
                hi = mid
        # Off the grid of round levels where tied keys sit (where every node would be walked).
        return hi - abs(hi) * 2.0**-30

    def counts(self, t: float) -> tuple[list[int], list[int], int, int]:
        """Exactly how many keys of each node are ``<= t``: rated nodes, unrated nodes, the rated
        nodes' sum, the sum of all."""
        # x = (t - u) / r computed in floats, and each key s(j) against u + j * r, are off by less
        # than half this band (in units of r) for every node not in self.walk with j <= x + 1, so
        # floor(x - band) is the count unless an integer lies within the band around x.
        band = _band(max(0.0, min(t * self.irmax, self.capmax + 2.0)), self.urmax)
        if band >= _WIDE_BAND:  # the maxima come from different nodes: walk them all
            return self._walked(t, range(self.m), [0] * self.m)
        xs = [t * a - b - band for a, b in zip(self.ir, self.ur, strict=True)]  # x - band
        below = list(map(math.floor, xs))
        counts = [c if f > c else (f if f > 0 else 0) for f, c in zip(below, self.cap, strict=True)]
        u, r, cap = self.u, self.r, self.cap
        walked: dict[tuple[float, float, int], int] = {}  # alike nodes are walked once
        # (x - band) - floor(x - band) >= 1 - 2 band: an integer lies within the band around x.
        if max(map(sub, xs, below), default=0.0) >= 1.0 - 2.0 * band:
            near = map(ge, map(sub, xs, below), repeat(1.0 - 2.0 * band))
            for i in compress(range(self.m), near):
                f = below[i] + 1
                if counts[i] != (cap[i] if f > cap[i] else (f if f > 0 else 0)):
                    node = (u[i], r[i], cap[i])
                    count = walked.get(node)
                    if count is None:
                        count = walked[node] = exact_count(*node, t)[0]
                    counts[i] = count
        return self._walked(t, self.walk, counts, walked)

    def _walked(
        self,
        t: float,
        which: Sequence[int],
        counts: list[int],
        walked: dict[tuple[float, float, int], int] | None = None,
    ) -> tuple[list[int], list[int], int, int]:
        """:meth:`counts` with the nodes ``which`` walked in floats."""
        u, r, cap = self.u, self.r, self.cap
        walked = {} if walked is None else walked
        for i in which:
            node = (u[i], r[i], cap[i])
            count = walked.get(node)
            if count is None:
                count = walked[node] = exact_count(*node, t)[0]
            counts[i] = count
        zcounts = [c if zu <= t else 0 for zu, c in zip(self.zu, self.zcap, strict=True)]
        rated = sum(counts)
        return counts, zcounts, rated, rated + sum(zcounts)


_Counts = tuple[list[int], list[int], int, int]


def level_counts(
    us: Sequence[float], rs: Sequence[float], caps: Sequence[int], need: int
) -> list[int] | None:
    """How many of ``need`` new instances Eru's GLOBAL puts on each node, in input order.

    ``us``/``rs``/``caps``: each node's usage, rate and capacity (all ``> 0``), ``0 < need <
    sum(caps)``. Ties between equal keys go to the earlier node. ``None`` when the inputs are
    outside what the level handles exactly (negative or non-finite numbers, rates below 1e-150,
    keys beyond 1e150): the caller pops a heap instead.
    """
    if not us or min(us) < 0.0 or min(rs) < 0.0:
        return None
    if not (math.isfinite(sum(us)) and math.isfinite(sum(rs))):
        return None
    fleet = _Fleet(us, rs, caps)
    if fleet.m and (min(fleet.r) < _TINY or fleet.end_max > _HUGE):
        return None

    # 1-2. A bracket t_lo < t_hi with count(t_lo) < need < count(t_hi): one exact count where the
    # sample says the level is, then steps past need to the other side (the sample's slope first,
    # then the secant through the last two exact counts), longer while they fall short.
    n = len(us)
    spread = 4.0 * math.sqrt(fleet.m + len(fleet.zu)) + 8.0
    t_a = fleet.level(need)
    a = fleet.counts(t_a)
    if a[3] == need:  # the need smallest keys are the keys <= t_a
        return _assemble(fleet, n, a, {})
    t_lo, t_hi = -1.0, fleet.tmax
    lo: _Counts | None = None
    hi: _Counts | None = None
    if a[3] < need:
        t_lo, lo = t_a, a
    else:
        t_hi, hi = t_a, a
    slope = fleet.expected(t_a)[1]
    stretch = 1.0
    for _ in range(8):
        if lo is not None and hi is not None:
            break
        short = (abs(need - a[3]) + spread) * stretch
        if slope > 0.0:
            t_b = t_a + short / slope if lo is not None else t_a - short / slope
        else:
            t_b = fleet.level(need + short if lo is not None else need - short)
        if lo is not None:
            t_b = min(fleet.tmax, max(t_b, math.nextafter(t_lo, _INF)))
        else:
            t_b = max(-1.0, min(t_b, math.nextafter(t_hi, -_INF)))
        b = fleet.counts(t_b)
        if b[3] == need:
            return _assemble(fleet, n, b, {})
        if b[3] < need:
            t_lo, lo = t_b, b
        else:
            t_hi, hi = t_b, b
        if b[3] != a[3]:
            slope, stretch = (b[3] - a[3]) / (t_b - t_a), 1.0
        else:  # a plateau (full or idle nodes): step further
            stretch *= 4.0
        t_a, a = t_b, b
    if lo is None:
        t_lo, lo = -1.0, fleet.counts(-1.0)
    if hi is None:
        t_hi, hi = fleet.tmax, fleet.counts(fleet.tmax)
    # A bracket much wider than the spread is pulled in on its far side by the secant (regula falsi).
    for _ in range(4):
        if hi[2] - lo[2] <= max(4.0 * spread, _SMALL_WINDOW) or _one_level(fleet, lo[0], hi[0]):
            break
        target = need + spread if hi[3] - need > need - lo[3] else need - spread
        t_c = t_lo + (target - lo[3]) * (t_hi - t_lo) / (hi[3] - lo[3])
        if not t_lo < t_c < t_hi:
            break
        c = fleet.counts(t_c)
        if c[3] == need:
            return _assemble(fleet, n, c, {})
        stuck = c[3] in (lo[3], hi[3])  # a tie of many keys: secants cannot split it
        if c[3] < need:
            t_lo, lo = t_c, c
        else:
            t_hi, hi = t_c, c
        if stuck:
            break
    # A wide bracket (ties, a far-off step) is halved, in float order, down to a window of keys
    # worth enumerating; if the ends become adjacent floats, every key inside equals t_hi.
    window_max = max(_WINDOW, 4 * fleet.m)
    while hi[2] - lo[2] > window_max:
        t_mid = _between(t_lo, t_hi)
        if t_mid is None:
            return _tied_at_top(fleet, n, need - lo[3], lo, hi)
        mid = fleet.counts(t_mid)
        if mid[3] == need:
            return _assemble(fleet, n, mid, {})
        if mid[3] < need:
            t_lo, lo = t_mid, mid
        else:
            t_hi, hi = t_mid, mid
    return _resolve(fleet, us, rs, need, t_hi, lo, hi)


def _one_level(fleet: _Fleet, lo: list[int], hi: list[int]) -> bool:
    """Whether the bracket looks like one tie across nodes (their first 64 keys in it are equal
    but for rounding): then no secant can narrow it."""
    u, r = fleet.u, fleet.r
    firsts = [u[i] + (lo[i] + 1) * r[i] for i in islice(compress(range(fleet.m), map(ne, lo, hi)), 64)]
    return len(firsts) > 1 and max(firsts) - min(firsts) <= 2.0**-40 * max(firsts)


def _resolve(
    fleet: _Fleet, us: Sequence[float], rs: Sequence[float], need: int, t_hi: float, lo: _Counts, hi: _Counts
) -> list[int]:
    """3. Sort the keys between the bracket ends, re-key exactly those within rounding of the
    ``need``-th, and take them in Eru's order."""
    left = need - lo[3]  # how many of the window's keys are taken: 1 <= left <= its keys
    if left == hi[3] - lo[3]:
        return _assemble(fleet, len(us), hi, {})
    # The window: (approximate key u + j * r, input position, j, how many keys), sorted.
    pos, u, r = fleet.pos, fleet.u, fleet.r
    lo_r, hi_r = lo[0], hi[0]
    nodes = list(compress(range(fleet.m), map(ne, lo_r, hi_r)))
    nth = list(map(add, map(lo_r.__getitem__, nodes), repeat(1)))
    values = list(map(add, map(u.__getitem__, nodes), map(mul, nth, map(r.__getitem__, nodes))))
    window = list(zip(values, map(pos.__getitem__, nodes), nth, repeat(1)))
    if hi[2] - lo[2] > len(nodes):  # some nodes have more than one key in the window
        for i in compress(nodes, map(gt, map(sub, map(hi_r.__getitem__, nodes), nth), repeat(0))):
            ui, ri, p = u[i], r[i], pos[i]
            window.extend([(ui + j * ri, p, j, 1) for j in range(lo_r[i] + 2, hi_r[i] + 1)])
    for i in compress(range(len(fleet.zu)), map(ne, lo[1], hi[1])):
        window.append((fleet.zu[i], fleet.zpos[i], 0, hi[1][i]))
    window.sort()
    # The entry holding the left-th key, and around it the run of entries closer than the rounding
    # of the approximate keys (half the gap each): beyond the run, their order is the floats' order.
    gap = 2.0 * (max(hi_r, default=0) + 4.0) * (t_hi + fleet.umax + fleet.rmax) * _SLACK
    held = list(accumulate(map(itemgetter(3), window)))
    k = bisect_left(held, left)
    values = list(map(itemgetter(0), window))
    apart = list(map(ge, map(sub, values[1:], values), repeat(gap)))  # apart[i]: between i and i + 1
    before = apart[:k]
    before.reverse()
    first = k - before.index(True) if True in before else 0
    last = apart.index(True, k) if True in apart[k:] else len(window) - 1
    # Entries before the run are all taken; the run is re-keyed with the float sums and taken in
    # Eru's order until left keys are in.
    taken: Counter[int] = Counter(map(itemgetter(1), window[:first]))
    for _, p, _, c in compress(window[:first], map(ne, map(itemgetter(3), window[:first]), repeat(1))):
        taken[p] += c - 1
    left -= held[first - 1] if first else 0
    run = window[first : last + 1]
    where = list(map(itemgetter(1), run))
    nth = list(map(itemgetter(2), run))
    sums = list(zip(map(us.__getitem__, where), map(rs.__getitem__, where), nth, strict=True))
    exact = {node: exact_key(*node) if node[2] else node[0] for node in set(sums)}
    if len(set(exact.values())) == 1 and held[last] - (held[first - 1] if first else 0) == len(run):
        # One float for the whole run, one key per entry (a tie across nodes): input order.
        taken.update(sorted(where)[:left])
        return _assemble(fleet, len(us), lo, taken)
    run = sorted(zip(map(exact.__getitem__, sums), where, nth, map(itemgetter(3), run), strict=True))
    held = list(accumulate(map(itemgetter(3), run)))
    k = bisect_left(held, left)
    taken.update(map(itemgetter(1), run[:k]))
    for _, p, _, c in compress(run[:k], map(ne, map(itemgetter(3), run[:k]), repeat(1))):
        taken[p] += c - 1
    taken[run[k][1]] += left - (held[k - 1] if k else 0)
    return _assemble(fleet, len(us), lo, taken)


def _assemble(fleet: _Fleet, n: int, lo: _Counts, taken: Mapping[int, int]) -> list[int]:
    if not fleet.zpos:
        result = list(lo[0])  # fleet.pos is range(n)
    else:
        result = [0] * n
        for p, c in zip(fleet.pos, lo[0], strict=True):
            result[p] = c
        for p, c in zip(fleet.zpos, lo[1], strict=True):
            result[p] = c
    for p, c in taken.items():
        result[p] += c
    return result


def _tied_at_top(fleet: _Fleet, n: int, left: int, lo: _Counts, hi: _Counts) -> list[int]:
    """Every key above ``lo`` and up to ``hi`` is the same float: they go in input order."""
    runs = [(fleet.pos[i], hi[0][i] - lo[0][i]) for i in compress(range(fleet.m), map(ne, lo[0], hi[0]))]
    runs += [(fleet.zpos[i], hi[1][i]) for i in compress(range(len(fleet.zu)), map(ne, lo[1], hi[1]))]
    runs.sort()
    taken: dict[int, int] = {}
    for p, c in runs:
        if left <= 0:
            break
        taken[p] = min(c, left)
        left -= taken[p]
    return _assemble(fleet, n, lo, taken)
