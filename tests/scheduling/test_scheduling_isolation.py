"""``scheduling`` is plain Python: importing it pulls in neither Django nor any other project module."""

from __future__ import annotations

import ast
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


def test_scheduling_sources_import_only_the_standard_library_and_themselves() -> None:
    for path in (ROOT / "scheduling").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top == "scheduling" or top in sys.stdlib_module_names or top == "__future__", (
                    path,
                    name,
                )
