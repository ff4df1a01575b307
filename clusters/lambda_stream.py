"""A lambda run's output for a client: the run's Redis stream (clusters.lambda_output) as NDJSON or
server-sent events, from its first entry to its end; once the stream has expired, the output the
run's row kept, then its end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from clusters import lambda_output
from clusters.models import LambdaRun


def events(run: LambdaRun) -> Iterator[dict[str, Any] | None]:
    """The run's events (None: a quiet while)."""
    run.refresh_from_db()
    if run.is_final and not lambda_output.exists(run.pk):
        for seq, data in lambda_output.kept_lines(run.output):
            yield {"event": "line", "seq": seq, "stream": "stdout", "data": data}
        yield {"event": "end", "state": run.state, "exit_code": run.exit_code}
        return
    for item in lambda_output.entries(run.pk, idle=settings.ERU_STREAM_IDLE):
        if item is not None:
            yield item[1]
            continue
        run.refresh_from_db()
        if run.is_final:  # ended, and its end never reached the stream (Redis failed then): say it
            yield {"event": "end", "state": run.state, "exit_code": run.exit_code}
            return
        yield None


def ndjson(run: LambdaRun) -> Iterator[bytes]:
    yield b"\n"  # the answer starts (its headers go) before the first line
    for event in events(run):
        yield b"\n" if event is None else json.dumps(event).encode() + b"\n"


def sse(run: LambdaRun) -> Iterator[bytes]:
    """For the run's page (logs.js, merged): each line after its workload's number."""
    yield b"retry: 3000\n\n"
    for event in events(run):
        if event is None:
            yield b": keep-alive\n\n"
        elif event["event"] == "line":
            line = {
                "name": f"#{event.get('seq', 0)}",
                "stream": event["stream"],
                "time": "",
                "data": event["data"],
            }
            yield f"event: line\ndata: {json.dumps(line)}\n\n".encode()
        elif event["event"] in ("starting", "exit"):
            text = (
                "starting…"
                if event["event"] == "starting"
                else f"ended {event['ended']} ({event['exit_code']})"
            )
            note = {"name": f"#{event.get('seq', 0)}", "error": text}
            yield f"event: line\ndata: {json.dumps(note)}\n\n".encode()
        elif event["event"] == "end":
            yield f"event: end\ndata: {json.dumps(event)}\n\n".encode()
            return
