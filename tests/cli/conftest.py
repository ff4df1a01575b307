"""The `cli` fixture: erucli run in-process against the live server, as the admin."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusters import services
from erucli.main import main


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(
    transactional_db: Any,
    live_server: Any,
    admin_user: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Callable[..., Run]:
    """Run erucli in-process as the admin (a fresh token); never touch the real ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for var in ("ERU", "ERU_TOKEN", "ERU_USERNAME"):
        monkeypatch.delenv(var, raising=False)
    _, admin_token = services.token_create(actor=services.SYSTEM, user=admin_user, name="t")

    def run(*args: Any, token: str | None = admin_token, eru: str | None = live_server.url) -> Run:
        capsys.readouterr()
        argv = (["--eru", eru] if eru else []) + (["--token", token] if token else [])
        code = main([*argv, *map(str, args)])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run
