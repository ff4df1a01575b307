"""erucli login and erucli audit."""

from __future__ import annotations

import getpass
import os
import socket
import sys

import click

from erucli import output as o
from erucli.cli import CliError, command
from erucli.client import Client, save_token
from erucli.output import Printer


@command("login", "get an API token with a username and password, and save it")
@click.option("--username", "-u", help="default: $ERU_USERNAME, else asked")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin (scripts)")
@click.option("--name", help="a name for the token (default: erucli@HOSTNAME)")
def login(api: Client, p: Printer, username: str | None, password_stdin: bool, name: str | None) -> int:
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
    token = anonymous.post("/api/auth/token/", {"username": username, "password": password, "name": name})
    path = save_token(token["token"])
    p.message(f"logged in to {api.base_url} as {username}; token saved to {path}", {"token_file": str(path)})
    return 0


@command("audit", "the audit log, newest first")
@click.option("--limit", type=int, default=20, help="how many events (default: 20)")
def audit(api: Client, p: Printer, limit: int) -> int:
    p.rows(api.get("/api/audit/", limit=limit)["results"], o.AUDIT_COLUMNS)
    return 0


COMMANDS = [login, audit]
