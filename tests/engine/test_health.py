"""Eru's health check rules against a real HTTP server and real sockets on loopback: every TCP port
must accept, the HTTP check must answer the expected code (0: anything from 200 to 499)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine import health


class _Handler(BaseHTTPRequestHandler):
    CODES = {"/ok": 200, "/created": 201, "/missing": 404, "/broken": 500, "/down": 503}

    def do_GET(self) -> None:  # noqa: N802 — http.server's name
        self.send_response(self.CODES.get(self.path, 200))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free again once closed: nothing listens there


@pytest.mark.parametrize(
    ("url", "code", "healthy"),
    [
        ("/ok", 0, True),
        ("/missing", 0, True),  # 404 is below 500: the server answers
        ("/broken", 0, False),
        ("/down", 0, False),
        ("/created", 201, True),
        ("/ok", 201, False),  # an exact code must be that code
    ],
)
def test_the_http_check_follows_eru_s_code_rule(server: int, url: str, code: int, healthy: bool) -> None:
    check = {"tcp_ports": [], "http_port": str(server), "url": url, "code": code}
    assert health.check("127.0.0.1", check, timeout=2) is healthy


def test_every_tcp_port_must_accept(server: int, closed_port: int) -> None:
    assert health.check("127.0.0.1", {"tcp_ports": [str(server)]}, timeout=2)
    assert not health.check("127.0.0.1", {"tcp_ports": [str(server), str(closed_port)]}, timeout=2)


def test_a_tcp_failure_fails_the_whole_check(server: int, closed_port: int) -> None:
    check = {"tcp_ports": [str(closed_port)], "http_port": str(server), "url": "/ok", "code": 0}
    assert not health.check("127.0.0.1", check, timeout=2)


def test_an_address_nothing_answers_on_is_unhealthy_within_the_timeout(closed_port: int) -> None:
    assert not health.check("127.0.0.1", {"http_port": str(closed_port), "url": "/"}, timeout=1)
