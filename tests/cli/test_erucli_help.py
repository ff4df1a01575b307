"""erucli without a server (the fast tier): every command has help with the global options, and a
usage error is argparse's exit 2. tests/cli/test_erucli.py runs the commands against a live server."""

from __future__ import annotations

import pytest

from erucli.main import main

COMMANDS = [
    ["login"],
    *[["pod", c] for c in ("add", "list", "remove", "nodes", "capacity")],
    *[["node", c] for c in ("add", "get", "list", "up", "down", "set", "remove")],
    *[["workload", c] for c in ("deploy", "list", "get", "status", "start", "stop", "restart", "remove")],
    ["deployment", "get"],
    ["deployment", "list"],
    ["audit"],
]


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for path in [[], ["pod"], ["node"], ["workload"], ["deployment"], *COMMANDS]:
        with pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0, path
        assert out.startswith(f"usage: erucli {' '.join(path)}".rstrip()), path
        if len(path) == 2:
            assert "--output" in out, path
            assert "--eru" in out, path
    with pytest.raises(SystemExit) as exit_:
        main(["workload", "deploy", "--pod", "eru"])  # usage error: argparse's exit 2
    assert exit_.value.code == 2
    assert "--entry" in capsys.readouterr().err
