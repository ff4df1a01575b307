"""Progress bars (rich) on stderr when it is a terminal; elsewhere nothing, and the caller prints its
plain lines, so that scripts and logs see exactly what they always saw.

While a bar shows, what the command prints to stderr (and to stdout, when that is the terminal too)
is written above the bar rather than through it."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


class Bar:
    """`with Bar("deployment 7", total=3) as bar: bar.update(completed=1, status="1 running")`.
    `bar.active` is False when stderr is not a terminal (or not `enabled`): then every call is a no-op."""

    def __init__(
        self, description: str, total: int | None, *, err: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.description = description
        self.total = total
        self.err = err or sys.stderr
        self.active = enabled and is_terminal(self.err)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Bar:
        if self.active:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}", markup=False),
                TimeElapsedColumn(),
                console=Console(file=self.err),
                redirect_stdout=is_terminal(sys.stdout),
                redirect_stderr=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, status="")
        return self

    def update(
        self,
        *,
        completed: int | None = None,
        advance: int | None = None,
        total: int | None = None,
        status: str | None = None,
        description: str | None = None,
    ) -> None:
        if self._progress is None or self._task is None:
            return
        fields: dict[str, Any] = {} if status is None else {"status": status}
        self._progress.update(
            self._task, completed=completed, advance=advance, total=total, description=description, **fields
        )

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
