"""``scheduling`` is plain Python: importing it pulls in neither Django nor any other project module.
The floors as a whole are import-linter contracts (pyproject.toml, run by bin/test); this one check
runs the import in a fresh interpreter, where nothing else is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "rest_framework", "celery", "clusters", "agents", "eru_site")


def test_importing_scheduling_imports_no_django() -> None:
    code = (
        "import json, sys\n"
        "from scheduling import NodeInfo, plan, CPUPlan, cpu_plans, cpu_plan_count, SchedulingError\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env={"PATH": ""}
    )
    loaded = json.loads(result.stdout)
    assert "scheduling" in loaded
    assert not [name for name in loaded if name.split(".")[0] in FORBIDDEN]
