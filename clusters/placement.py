"""The placement summary of a deploy: for every node of the pod, how many instances of the request it
takes now, or why it was left out — down (set down, or no heartbeat), not one of the named nodes, a
label that does not match, not enough cpu or memory (scheduling.placement), beyond the nodes limit —
with the counts per reason, as Nomad's placement failure summary gives them ("Constraint … filtered
N nodes; Resources exhausted on N nodes"). The deploy form shows it as its capacity preview; when a
deploy cannot be placed, services.deploy adds it to the error (the API's 400 `placement`). Reads
only: one query for the pod's nodes, plus etcd's heartbeats."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

import scheduling
from clusters import etcd, selectors
from clusters.models import Node, Pod
from scheduling.placement import CPU, MEMORY, NODES_LIMIT, Shortfall, limited_out, node_fit

DOWN = "down"
BYPASSED = "bypassed"
NOT_NAMED = "not in node_names"
LABELS = "label mismatch"
ORDER = (BYPASSED, DOWN, NOT_NAMED, LABELS, CPU, MEMORY, NODES_LIMIT)
SHOWN = 50  # nodes listed one by one (the counts cover all of them)


@dataclass(frozen=True)
class Verdict:
    """One node: `fits` instances (UNLIMITED: memory does not bound it), or `reason` it was left out."""

    node: str
    fits: int = 0
    reason: str = ""
    detail: str = ""

    @property
    def unlimited(self) -> bool:
        return self.fits >= scheduling.UNLIMITED

    def __str__(self) -> str:
        if not self.reason:
            return f"{self.node}: fits {'any number' if self.unlimited else self.fits}"
        return f"{self.node}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Summary:
    verdicts: list[Verdict]
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def fitting(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.reason]

    @property
    def left_out(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.reason]

    @property
    def total(self) -> int:
        return min(sum(v.fits for v in self.fitting), scheduling.UNLIMITED)

    @property
    def any_number(self) -> bool:
        return self.total >= scheduling.UNLIMITED

    @property
    def shown(self) -> list[Verdict]:
        """The nodes listed one by one: those that fit and those left out for a reason of their own
        (a node that is only not one of the named ones is counted, not listed), at most SHOWN."""
        return [v for v in self.verdicts if v.reason != NOT_NAMED][:SHOWN]

    def headline(self) -> str:
        """Nomad's line: how many nodes were left out, by reason, and what the others take."""
        n = len(self.verdicts)
        nodes = f"{n} node{'s' if n != 1 else ''}"
        if self.counts:
            parts = ", ".join(f"{self.counts[r]} {r}" for r in ORDER if self.counts.get(r))
            line = f"{sum(self.counts.values())} of {nodes} left out: {parts}"
        else:
            line = f"{nodes}, none left out"
        fitting = len(self.fitting)
        if not fitting:
            return line
        taken = "any number" if self.any_number else str(self.total)
        return f"{line}; {fitting} {'fits' if fitting == 1 else 'fit'}, taking {taken} in all"

    def lines(self) -> list[str]:
        """The API's `placement` list: the headline, then one line per node listed."""
        return [self.headline(), *(str(v) for v in self.shown)]


def _labels_mismatch(labels: Mapping[str, str], wanted: Mapping[str, str]) -> str:
    wrong = [
        f"{k}={labels[k]!s}, not {v}" if k in labels else f"no {k}"
        for k, v in wanted.items()
        if labels.get(k) != v
    ]
    return "; ".join(wrong)


def summarize(
    pod: Pod,
    *,
    node_names: Sequence[str],
    node_labels: Mapping[str, str],
    resources: scheduling.ResourceRequest,
    nodes_limit: int = 0,
) -> Summary:
    """Every node of the pod against the request, in name order."""
    alive = etcd.alive_nodes()
    named = set(node_names)
    verdicts: list[Verdict] = []
    nodes = Node.objects.filter(pod=pod).defer("tls_ca", "tls_cert", "tls_key", "info").order_by("name")
    for node in nodes:
        if named and node.name not in named:
            verdicts.append(Verdict(node.name, reason=NOT_NAMED))
        elif node.bypass:
            verdicts.append(Verdict(node.name, reason=BYPASSED, detail="set down by an operator"))
        elif node.name not in alive:
            verdicts.append(Verdict(node.name, reason=DOWN, detail="no heartbeat"))
        elif wrong := _labels_mismatch(node.labels, node_labels):
            verdicts.append(Verdict(node.name, reason=LABELS, detail=wrong))
        else:
            fit = node_fit(selectors.node_resources(node), resources)
            if isinstance(fit, Shortfall):
                verdicts.append(Verdict(node.name, reason=f"not enough {fit.resource}", detail=fit.detail))
            else:
                verdicts.append(Verdict(node.name, fits=fit))
    beyond = set(limited_out([(v.node, v.fits) for v in verdicts if not v.reason], nodes_limit))
    if beyond:
        verdicts = [
            Verdict(v.node, fits=v.fits, reason=NODES_LIMIT, detail=f"only {nodes_limit} node(s) are used")
            if v.node in beyond
            else v
            for v in verdicts
        ]
    counts = Counter(v.reason.removeprefix("not enough ") for v in verdicts if v.reason)
    return Summary(verdicts, dict(counts))


def explain(
    pod: Pod, request: object, resources: scheduling.ResourceRequest, exc: ValidationError
) -> ValidationError:
    """A placement error (`exc`: the plan or the node filter failed) with the summary added: the
    headline after the first message of its field, every line under `placement`."""
    summary = summarize(
        pod,
        node_names=getattr(request, "node_names", ()) or (),
        node_labels=getattr(request, "node_labels", {}) or {},
        resources=resources,
        nodes_limit=getattr(request, "nodes_limit", 0) or 0,
    )
    errors: dict[str, list[str]] = (
        {k: list(v) for k, v in exc.message_dict.items()}
        if hasattr(exc, "error_dict")
        else {"count": list(exc.messages)}
    )
    first = next(iter(errors))
    errors[first][0] = f"{errors[first][0]} — {summary.headline()}"
    errors["placement"] = summary.lines()
    return ValidationError(errors)
