"""Run by tests/ha with the HA cluster's environment (python tests/ha/probe.py APP [CONTROL_ID]): prints,
as one JSON object, what the database and etcd say — each node's usage beside the sum of the workloads
holding an allocation on it, the drift between the database and etcd (clusters.sync.check), and the
app's workloads and the control target's state."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import django  # noqa: E402

django.setup()

from clusters import sync  # noqa: E402
from clusters.models import Node, Workload  # noqa: E402


def usage() -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for node in Node.objects.all():
        held = list(Workload.objects.filter(Workload.holding(), node=node))
        pieces: dict[str, int] = {}
        for w in held:
            for core, n in w.cpu_map.items():
                pieces[core] = pieces.get(core, 0) + n
        found[node.name] = {
            "used_cpu": round(node.used_cpu, 6),
            "held_cpu": round(sum(w.cpu_request for w in held), 6),
            "used_memory": node.used_memory,
            "held_memory": sum(w.memory_request for w in held),
            "used_cpu_map": {k: v for k, v in node.used_cpu_map.items() if v},
            "held_cpu_map": pieces,
        }
    return found


def main() -> None:
    app = sys.argv[1]
    control = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    try:
        drift = sync.check()
        drift_count: int | None = drift.count
        drift_summary = drift.summary()
    except Exception as exc:  # noqa: BLE001 — etcd away: report it, the test polls again
        drift_count, drift_summary = None, f"{type(exc).__name__}: {exc}"
    rows = Workload.objects.filter(app=app)
    ctl = Workload.objects.filter(pk=control).values("state", "action", "container_id").first()
    print(
        json.dumps(
            {
                "usage": usage(),
                "drift": drift_count,
                "drift_summary": drift_summary,
                "workloads": {w.name: [w.state, w.container_id] for w in rows},
                "control": ctl,
            }
        )
    )


main()
