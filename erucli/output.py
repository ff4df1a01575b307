"""Plain output: aligned tables, key/value blocks, and `--output json`. No colours, no YAML (the
progress bars of erucli/progress.py are the only rich output, on a terminal only)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

Column = tuple[str, str | Callable[[Mapping[str, Any]], Any]]

_UNITS = (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10))


def size(value: Any) -> str:
    """Bytes as erucli shows them: binary multiples, e.g. 512M, 1.5G; 0 is "0"."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return cell(value)
    if value == 0:
        return "0"
    for unit, factor in _UNITS:
        if abs(value) >= factor:
            return f"{value / factor:.4g}{unit}"
    return f"{int(value)}B"


def cpu(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else cell(value)


def labels(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return cell(value)


def when(value: Any) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM:SS' (the API answers in UTC)."""
    if isinstance(value, str) and len(value) >= 19 and value[10] == "T":
        return value[:10] + " " + value[11:19]
    return cell(value)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return labels(value)
    if isinstance(value, list | tuple):
        return " ".join(cell(v) for v in value)
    return " ".join(str(value).split())  # one line per row, whatever the text


def _value(row: Mapping[str, Any], getter: str | Callable[[Mapping[str, Any]], Any]) -> str:
    return cell(getter(row) if callable(getter) else row.get(getter))


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """Columns aligned on the widest cell; the last column is not padded."""
    grid = [[header for header, _ in columns]]
    grid += [[_value(row, getter) for _, getter in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = []
    for line in grid:
        padded = [text.ljust(widths[i]) for i, text in enumerate(line[:-1])] + [line[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def keyvalues(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {cell(v)}".rstrip() for k, v in pairs)


class Printer:
    """Prints results on stdout as a table or JSON; progress and errors go to stderr."""

    def __init__(self, fmt: str = "table", out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.fmt = fmt
        self.out = out
        self.err = err

    @property
    def json(self) -> bool:
        return self.fmt == "json"

    def _out(self) -> TextIO:
        return self.out or sys.stdout

    def _err(self) -> TextIO:
        return self.err or sys.stderr

    def line(self, text: str, *, stderr: bool = False) -> None:
        """One line as it comes (a log's), flushed at once."""
        print(text, file=self._err() if stderr else self._out(), flush=True)

    def write(self, text: str, *, stderr: bool = False) -> None:
        """Text as it is (an exec's output), flushed at once."""
        stream = self._err() if stderr else self._out()
        stream.write(text)
        stream.flush()

    def dump(self, data: Any) -> None:
        print(json.dumps(data, indent=2, sort_keys=True, default=str), file=self._out())

    def rows(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], data: Any = None) -> None:
        """A table, or in JSON mode `data` (default: the rows themselves)."""
        if self.json:
            self.dump(list(rows) if data is None else data)
        else:
            print(table(rows, columns), file=self._out())

    def record(self, pairs: Sequence[tuple[str, Any]], data: Any) -> None:
        """One object: `key  value` lines, or in JSON mode `data`."""
        if self.json:
            self.dump(data)
        else:
            print(keyvalues(pairs), file=self._out())

    def message(self, text: str, data: Any = None) -> None:
        """A one-line confirmation (stdout), or in JSON mode `data` (nothing when None)."""
        if self.json:
            if data is not None:
                self.dump(data)
        else:
            print(text, file=self._out())

    def progress(self, text: str) -> None:
        print(text, file=self._err(), flush=True)

    def error(self, lines: Sequence[str]) -> None:
        for line in lines:
            print(f"error: {line}", file=self._err())


# --- table layouts of the API's objects ---------------------------------------------------------
def node_status(node: Mapping[str, Any]) -> str:
    if node.get("available"):
        return "up"
    return "down" if node.get("bypass") else "down (no heartbeat)"


NODE_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("POD", "pod"),
    ("ENDPOINT", "endpoint"),
    ("STATUS", node_status),
    ("CPU", lambda n: f"{cpu(n['used_cpu'])}/{cpu(n['cpu'])}"),
    ("MEMORY", lambda n: f"{size(n['used_memory'])}/{size(n['memory'])}"),
    ("LABELS", "labels"),
]


def observed(w: Mapping[str, Any]) -> str:
    """The observed status as the portal shows it: "exited (5)", "restarting (3 restarts)"."""
    return str(w.get("status_label") or w.get("status") or "-")


STATUS_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("NODE", "node"),
    ("STATE", "state"),
    ("STATUS", observed),
    ("HEALTH", "health"),
    ("SINCE", lambda w: when(w.get("status_since"))),
    ("LAST OBSERVED", lambda w: when(w.get("last_observed"))),
]
WORKLOAD_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("NODE", "node"),
    ("STATE", "state"),
    ("CONTAINER", lambda w: (w.get("container_id") or "")[:12]),
    ("ERROR", "error"),
]
DEPLOYMENT_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("POD", "pod"),
    ("APP", "app"),
    ("ENTRY", "entrypoint"),
    ("STATE", "state"),
    ("DONE", lambda d: f"{d['succeeded']}/{d['total']}"),
    ("CREATED", lambda d: when(d["created_at"])),
]
AUDIT_COLUMNS: list[Column] = [
    ("TIME", lambda e: when(e["time"])),
    ("ACTOR", lambda e: e["actor_name"] or "system"),
    ("VIA", "via"),
    ("ACTION", "action"),
    ("TARGET", lambda e: f"{e['target_type']} {e['target_name']}"),
]


WORKLOAD_FIELDS: tuple[str, ...] = ("id", "name", "pod", "node", "app", "entrypoint", "image", "command")
WORKLOAD_FIELDS += ("env", "labels", "network", "state", "status", "exit_code", "health", "restart_count")
WORKLOAD_FIELDS += ("last_observed", "container_id", "networks", "ports", "cpu_bind", "cpu_map")
WORKLOAD_FIELDS += ("deployment", "error")


def workload_pairs(w: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A workload as `workload get` shows it, key by key."""
    pairs = [(k, w.get(k)) for k in WORKLOAD_FIELDS]
    pairs += [
        ("cpu", f"request {cpu(w['cpu_request'])}, limit {cpu(w['cpu_limit'])}"),
        ("memory", f"request {size(w['memory_request'])}, limit {size(w['memory_limit'])}"),
        ("created", when(w["created_at"])),
        ("updated", when(w["updated_at"])),
    ]
    return pairs


def records(p: Printer, items: Sequence[Mapping[str, Any]]) -> None:
    """Workloads one after another (a blank line between), or in JSON one object or a list."""
    if p.json:
        p.dump(items[0] if len(items) == 1 else list(items))
        return
    for i, w in enumerate(items):
        if i:
            p.message("")
        p.record(workload_pairs(w), w)
