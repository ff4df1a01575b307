"""Eru's health check, run against a container's address: healthy when every TCP port accepts a
connection and, if an HTTP port is given, GET http://address:port{url} answers `code` (0: any status
from 200 to 499). Standard library only: the sweep (workers) and the node agent run the same check."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Mapping, Sequence
from typing import Any

UNREACHABLE = (socket.timeout, TimeoutError, OSError)


def tcp_ok(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except UNREACHABLE:
        return False


def http_ok(address: str, port: int, url: str, code: int, timeout: float) -> bool:
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", url or "/", headers={"User-Agent": "eru-healthcheck"})
        status = connection.getresponse().status
    except (*UNREACHABLE, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return 200 <= status < 500 if code == 0 else status == code


def check(address: str, healthcheck: Mapping[str, Any], timeout: float) -> bool:
    """The check of a workload's `healthcheck` (tcp_ports, http_port, url, code) at `address`. A
    check that cannot even be made (a url http.client refuses, say) is a failed check, not an error."""
    try:
        return _check(address, healthcheck, timeout)
    except Exception:  # noqa: BLE001 — whatever the workload's spec holds, never the caller's problem
        return False


def _check(address: str, healthcheck: Mapping[str, Any], timeout: float) -> bool:
    ports: Sequence[Any] = healthcheck.get("tcp_ports") or []
    if not all(tcp_ok(address, int(port), timeout) for port in ports):
        return False
    http_port = healthcheck.get("http_port") or ""
    if not http_port:
        return True
    return http_ok(
        address,
        int(http_port),
        str(healthcheck.get("url") or "/"),
        int(healthcheck.get("code") or 0),
        timeout,
    )
