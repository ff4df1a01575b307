"""Logs: (1) forwarding throughput — lines/s from one container's log to a local tcp listener through
the agent (python -m nodeagent), against reading the same lines with the docker SDK's logs stream
directly, same run (target: at least 0.8x); (2) the time from a line printed to the API's followed
stream (NDJSON) showing it, and (3) to a real browser (Chromium, the workload page's live view over
server-sent events, the portal served by Django's threaded WSGI server) showing it (target: p95 under
1 s).

Usage: .venv/bin/python bench/logs.py [--lines 20000] [--samples 20]
Starts its own services under var/bench-logs (one dockerd node, etcd, Redis; port base 28900)."""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent import one_node  # noqa: E402  (bench/agent.py)
from sweep import IMAGE, ROOT, services  # noqa: E402  (bench/sweep.py)

DIR = ROOT / "var" / "bench-logs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with services(DIR, nodes=1, port_base=28900):
        run(args.lines, args.samples)


def listener(expected: int, done: threading.Event) -> tuple[int, list[float]]:
    """A tcp listener that counts the lines it gets (cheaply: the listener is not what is measured)
    and notes when the first came and when the `expected`-th did, then sets `done`."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    times: list[float] = []

    def serve() -> None:
        conn, _ = server.accept()
        count = 0
        while chunk := conn.recv(1 << 20):
            if not count:
                times.append(time.perf_counter())
            count += chunk.count(b"\n")
            if count >= expected:
                times.append(time.perf_counter())
                done.set()
                return

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], times


def run(lines: int, samples: int) -> None:
    pod, node, secret, sock = one_node()
    name = node.name
    from rest_framework.test import APIClient

    from agents import grpc_server
    from clusters import selectors
    from clusters.models import Workload
    from engine import logs

    server, port = grpc_server.serve("127.0.0.1:0", workers=4)
    docker = selectors.node_client(node)
    raw = __import__("docker").DockerClient(base_url=sock, version="1.41")

    # --- (1) forwarding throughput ------------------------------------------------------------
    printer = docker.containers.create(
        IMAGE, ["sh", "-c", f"sleep 2; seq 1 {lines}; sleep 3600"], name="bench_e_000001",
        labels={"ERU": "1", "eru.nodename": name, "eru.podname": "eru"},
    )  # fmt: skip
    done = threading.Event()
    tcp_port, arrived = listener(lines, done)
    secret_file = DIR / "agent.secret"
    secret_file.write_text(secret)
    (DIR / "run").mkdir(exist_ok=True)
    (DIR / "run" / "log-cursors.json").unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "nodeagent", "--core", f"127.0.0.1:{port}", "--hostname", name,
        "--password-file", str(secret_file), "--docker-endpoint", sock, "--run-dir", str(DIR / "run"),
        "--heartbeat-interval", "5", "--log-forwards", f"tcp://127.0.0.1:{tcp_port}",
    ]  # fmt: skip
    agent = subprocess.Popen(argv, cwd=ROOT, stdout=(DIR / "agent.log").open("ab"), stderr=subprocess.STDOUT)
    try:
        time.sleep(2)
        printer.start()
        if not done.wait(120):
            raise SystemExit(f"not all of the {lines} lines arrived")
        forwarded = lines / (arrived[-1] - arrived[0])
        t0 = time.perf_counter()  # the same lines, read with the docker SDK's log stream directly
        count = sum(chunk.count(b"\n") for chunk in raw.api.logs(printer.id, stream=True, follow=False))
        direct = count / (time.perf_counter() - t0)
        print(f"forwarding, {lines} lines from one container to a local tcp listener:")
        print(
            f"  agent {forwarded:.0f} lines/s, docker SDK logs stream {direct:.0f} lines/s:"
            f" {forwarded / direct:.2f}x"
        )
        print("  target: at least 0.8x")
    finally:
        agent.terminate()
        agent.wait(15)
        server.stop(0)

    # --- (2) a line printed -> the API's followed stream -------------------------------------------
    talker = docker.containers.create(
        IMAGE, ["sh", "-c", "while true; do echo tick; sleep 0.25; done"],
        name="bench_e_000002", labels={"ERU": "1", "eru.nodename": name},
    )  # fmt: skip
    talker.start()
    w = Workload.objects.create(
        name="bench_e_000002", pod=pod, node=node, app="bench", entrypoint="e", image=IMAGE,
        container_id=talker.id, state=Workload.State.RUNNING,
    )  # fmt: skip
    from django.contrib.auth.models import User

    api = APIClient()
    api.force_authenticate(User.objects.create_superuser("bench", password="bench-password-1"))
    response = api.get(f"/api/workloads/{w.pk}/logs/", {"tail": "0", "follow": "true"})
    delays = []
    for chunk in response.streaming_content:
        arrived = time.time()
        line = chunk.strip()
        if not line:
            continue
        seconds, nanos = logs.cursor(json.loads(line)["time"])  # when dockerd took the line
        delays.append(arrived - (seconds + nanos / 1e9))
        if len(delays) >= samples:
            break
    response.close()
    report("a line printed (dockerd's time of it) -> the API's followed stream", delays)
    report("a line printed -> the browser's live view showing it", in_browser(w.pk, samples))


def report(what: str, delays: list[float]) -> None:
    delays = sorted(delays)
    p95 = delays[max(0, round(0.95 * len(delays)) - 1)]
    print(f"{what}, {len(delays)} lines:")
    print(
        f"  median {statistics.median(delays) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (target: p95 under 1 s)"
    )


# Each line the live view adds carries dockerd's time of it (its title): noted with the page's clock.
WATCH = """() => {
  window.seen = [];
  new MutationObserver((changes) => {
    const now = performance.timeOrigin + performance.now();
    for (const c of changes)
      for (const n of c.addedNodes) if (n.title) window.seen.push([n.title.split(" ")[0], now]);
  }).observe(document.querySelector("#log pre"), {childList: true});
}"""


def in_browser(workload_id: int, samples: int) -> list[float]:
    """The workload page in Chromium: how long after dockerd took each new line the page showed it."""
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application
    from playwright.sync_api import sync_playwright

    from engine import logs

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadedWSGIServer(("127.0.0.1", 0), Quiet, allow_reuse_address=False)
    httpd.set_app(get_wsgi_application())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page()
            page.goto(f"{base}/login/")
            page.locator("#id_username").fill("bench")
            page.locator("#id_password").fill("bench-password-1")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{base}/")
            page.goto(f"{base}/workloads/{workload_id}/")
            page.locator("#log pre .log-line").first.wait_for()
            page.evaluate(WATCH)
            page.wait_for_function(f"window.seen.length >= {samples}", timeout=samples * 1000 + 10_000)
            seen = page.evaluate("window.seen")
            browser.close()
    finally:
        httpd.shutdown()
    delays = []
    for stamp, shown in seen[:samples]:
        seconds, nanos = logs.cursor(stamp)
        delays.append(shown / 1000 - (seconds + nanos / 1e9))
    return delays


if __name__ == "__main__":
    main()
