"""The floors of DESIGN.md §4: scheduling/ and agents/docker.py import nothing of the project,
clusters never imports agents.tasks (in any spelling) and reaches outside itself only by absolute
imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"eru_site", "clusters", "scheduling", "agents"}
BEYOND_TOP = "<beyond-top>"  # a relative import climbing past the top-level package


def _resolve(node: ast.ImportFrom, package: list[str]) -> set[str]:
    """`from a import b` gives `a` and `a.b` (b may be a module); relative ones are made absolute."""
    base = [node.module] if node.module else []
    if node.level:
        up = node.level - 1
        base = [*(package[: len(package) - up] if up < len(package) else [BEYOND_TOP]), *base]
    names = {".".join([*base, alias.name]) for alias in node.names}
    return names | ({".".join(base)} if base else set())


def _imports(path: Path, root: Path = ROOT, *, relative_only: bool = False) -> set[str]:
    package = list(path.resolve().relative_to(root.resolve()).parts[:-1])  # a/b/c.py, a/b/__init__.py: a.b
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and not relative_only:
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.level or not relative_only):
            names.update(_resolve(node, package))
    return names


def _is_agent_tasks(name: str) -> bool:
    return name == "agents.tasks" or name.startswith("agents.tasks.")


def test_scheduling_imports_no_django_in_a_fresh_interpreter() -> None:
    code = "import sys, scheduling; assert 'django' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_docker_adapter_imports_nothing_of_the_project() -> None:
    assert not {name.split(".")[0] for name in _imports(ROOT / "agents" / "docker.py")} & PROJECT


def test_clusters_never_imports_agent_tasks_or_the_site() -> None:
    for path in (ROOT / "clusters").rglob("*.py"):
        names = _imports(path)
        assert not [n for n in names if _is_agent_tasks(n)], path
        assert not any(n.split(".")[0] == "eru_site" for n in names), path


def test_clusters_uses_relative_imports_only_within_clusters() -> None:
    for path in (ROOT / "clusters").rglob("*.py"):
        outside = {n for n in _imports(path, relative_only=True) if n.split(".")[0] != "clusters"}
        assert not outside, (path, outside)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("clusters/services.py", "from agents import tasks", {"agents", "agents.tasks"}),
        ("clusters/services.py", "from agents.tasks import run", {"agents.tasks", "agents.tasks.run"}),
        ("clusters/services.py", "import agents.tasks as t", {"agents.tasks"}),
        ("clusters/services.py", "from . import etcd", {"clusters", "clusters.etcd"}),
        (
            "clusters/management/commands/x.py",
            "from ...sync import push",
            {"clusters.sync", "clusters.sync.push"},
        ),
        ("clusters/__init__.py", "from .models import Pod", {"clusters.models", "clusters.models.Pod"}),
        (
            "clusters/services.py",
            "from ..agents import tasks",
            {f"{BEYOND_TOP}.agents", f"{BEYOND_TOP}.agents.tasks"},
        ),
    ],
)
def test_the_import_scan_sees_every_spelling(
    module: str, source: str, expected: set[str], tmp_path: Path
) -> None:
    path = tmp_path / module
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    assert _imports(path, root=tmp_path) == expected
    relative = _imports(path, root=tmp_path, relative_only=True)
    assert relative == (expected if source.startswith("from .") else set())
