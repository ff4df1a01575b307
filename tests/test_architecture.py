"""The floors of DESIGN.md §4: scheduling/ and agents/docker.py import nothing of the project,
clusters never imports agents.tasks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"eru_site", "clusters", "scheduling", "agents"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_scheduling_imports_no_django_in_a_fresh_interpreter() -> None:
    code = "import sys, scheduling; assert 'django' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_docker_adapter_imports_nothing_of_the_project() -> None:
    assert not {name.split(".")[0] for name in _imports(ROOT / "agents" / "docker.py")} & PROJECT


def test_clusters_never_imports_agent_tasks_or_the_site() -> None:
    for path in (ROOT / "clusters").rglob("*.py"):
        names = _imports(path)
        assert "agents.tasks" not in names, path
        assert not any(n.split(".")[0] == "eru_site" for n in names), path
