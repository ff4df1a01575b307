"""erucli login and erucli audit."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from typing import Any

import click

from erucli import output as o
from erucli.cli import CliError, _ParamType, command
from erucli.client import Client, save_token
from erucli.output import Printer


class Lifetime(_ParamType):
    """Seconds from 30d, 12h, 90m, 45s, 2w or 3600; `never`: None (a token that does not expire)."""

    name = "DURATION"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "never":
            return None
        number, unit = (text[:-1], text[-1]) if text[-1:] in self.UNITS else (text, "s")
        if not number.isdigit():
            self.fail(
                f"expected a duration like 30d, 12h or 3600 (seconds), or never; got {value!r}", param, ctx
            )
        return int(number) * self.UNITS[unit]


@command("login", "get an API token with a username and password, and save it")
@click.option("--username", "-u", help="default: $ERU_USERNAME, else asked")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin (scripts)")
@click.option("--name", help="a name for the token (default: erucli@HOSTNAME)")
@click.option(
    "--expires-in",
    type=Lifetime(),
    default="30d",
    show_default=True,
    help="the token's life (e.g. 12h, 90d, never)",
)
@click.option("--read-only", is_flag=True, help="a token that may only read: every write with it is refused")
def login(
    api: Client,
    p: Printer,
    username: str | None,
    password_stdin: bool,
    name: str | None,
    expires_in: int | None,
    read_only: bool,
) -> int:
    try:
        username = username or os.environ.get("ERU_USERNAME") or input("Username: ").strip()
    except EOFError:
        raise CliError("no username: give --username") from None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {username}: ")
    anonymous = Client(api.base_url, timeout=api.timeout)  # an old, revoked token would be refused
    name = name or f"erucli@{socket.gethostname()}"
    body = {"username": username, "password": password, "name": name, "expires_in": expires_in}
    token = anonymous.post("/api/auth/token/", {**body, "read_only": read_only})
    path = save_token(token["token"])
    scope = " (read-only)" if token.get("read_only") else ""
    until = f"; it expires {token['expires_at']}" if token.get("expires_at") else "; it never expires"
    p.message(
        f"logged in to {api.base_url} as {username}; token{scope} saved to {path}{until}",
        {
            "token_file": str(path),
            "expires_at": token.get("expires_at"),
            "read_only": bool(token.get("read_only")),
        },
    )
    return 0


@command("audit", "the audit log, newest first")
@click.option("--limit", type=int, default=20, help="how many events (default: 20)")
def audit(api: Client, p: Printer, limit: int) -> int:
    p.rows(api.get("/api/audit/", limit=limit)["results"], o.AUDIT_COLUMNS)
    return 0


COMMANDS = [login, audit]
