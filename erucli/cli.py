"""erucli's click plumbing, shared by the command modules (erucli/cmd_*.py; main.py assembles them).

- The global options (-e/--eru, --token, -o/--output, --timeout) sit on the top group with their
  defaults, and again, without defaults, on every command: given after the command they win, absent
  they keep the top group's. `command()` adds them and hands the handler a Client and a Printer.
- Help shows options in sections (`Opt(section=...)`), global options last; groups list commands in
  the order they were added and resolve aliases.
- Parameter types: KEY=VALUE pairs and sizes (512M, 1G, -2G)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click

import schema
from erucli.client import DEFAULT_URL, Client, read_token
from erucli.output import Printer

GLOBAL = "global options"
GLOBAL_NAMES = ("eru", "token", "output", "timeout")  # stored as g_eru, ...: clear of the commands' own
DEFAULT_OUTPUT, DEFAULT_TIMEOUT = "table", 30.0
CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
Handler = Callable[..., int]  # handler(api, printer, **params) -> exit code


class CliError(Exception):
    """A mistake found before calling the API (unreadable file, nothing to do, ...)."""


class Opt(click.Option):
    """An option listed under `section` in its command's help (default: "Options")."""

    def __init__(self, *args: Any, section: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


def option(*decls: str, section: str | None = None, **attrs: Any) -> Callable[[Any], Any]:
    return click.option(*decls, cls=Opt, section=section, **attrs)


class Arg(click.Argument):
    """A positional argument with a help text, listed under "Positional arguments" (click before 8.5
    has no help for arguments; the text is kept apart so that 8.5's own section stays empty)."""

    def __init__(self, *args: Any, help: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arg_help = help


def argument(*decls: str, help: str = "", **attrs: Any) -> Callable[[Any], Any]:
    return click.argument(*decls, cls=Arg, help=help, **attrs)


def _format_sections(command: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    sections: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(ctx):
        if isinstance(param, Arg):
            name = param.metavar or param.human_readable_name
            sections.setdefault("Positional arguments", []).append((name, param.arg_help))
        elif not isinstance(param, click.Argument) and (record := param.get_help_record(ctx)) is not None:
            sections.setdefault(getattr(param, "section", None) or "Options", []).append(record)
    order = ("Positional arguments", "Options")  # then the others as they come, global options last
    for title in sorted(sections, key=lambda t: (t == GLOBAL, order.index(t) if t in order else 2)):
        with formatter.section(title):
            formatter.write_dl(sections[title])


class Command(click.Command):
    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_sections(self, ctx, formatter)


class Group(click.Group):
    """Commands in the order they were added (as argparse listed them); `aliases` maps other names."""

    command_class = Command

    def __init__(self, *args: Any, aliases: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = dict(aliases or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.commands.get(self.aliases.get(cmd_name, cmd_name))

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_sections(self, ctx, formatter)
        self.format_commands(ctx, formatter)


def global_options(*, top: bool, http_timeout: bool = True) -> list[click.Parameter]:
    """On the top group with real defaults; on a command with None (= not given there)."""
    params: list[click.Parameter] = [
        Opt(
            ["-e", "--eru", "g_eru"], metavar="URL", section=GLOBAL,
            help=f"API base URL (default: $ERU, else {DEFAULT_URL})",
        ),
        Opt(
            ["--token", "g_token"], section=GLOBAL,
            help="API token (default: $ERU_TOKEN, else the token saved by `erucli login`)",
        ),
        Opt(
            ["-o", "--output", "g_output"], type=click.Choice(["table", "json"]), section=GLOBAL,
            default=DEFAULT_OUTPUT if top else None, help="output format (default: table)",
        ),
    ]  # fmt: skip
    if http_timeout:
        params.append(
            Opt(
                ["--timeout", "g_timeout"],
                type=float,
                metavar="SECONDS",
                section=GLOBAL,
                default=DEFAULT_TIMEOUT if top else None,
                help=f"timeout of each HTTP request (default: {DEFAULT_TIMEOUT:g})",
            )  # fmt: skip
        )
    return params


def _settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """The global options given on the command, else on the top group (else their defaults)."""
    top = click.get_current_context().find_root().params
    value = {}
    for name in GLOBAL_NAMES:
        here = given.get(f"g_{name}")
        value[name] = here if here is not None else top.get(f"g_{name}")
    return value


def command(name: str, help: str, *, http_timeout: bool = True, **attrs: Any) -> Callable[[Handler], Command]:
    """A click command from `handler(api, printer, **params) -> exit code`, decorated with its options
    (click.option / option / click.argument, in help order); the global options are added last.
    `http_timeout=False` leaves --timeout to the command (its own meaning), the top one still works."""

    def decorate(handler: Handler) -> Command:
        params = list(reversed(getattr(handler, "__click_params__", [])))

        def callback(**kw: Any) -> int:
            value = _settings({f"g_{n}": kw.pop(f"g_{n}", None) for n in GLOBAL_NAMES})
            url = value["eru"] or os.environ.get("ERU") or DEFAULT_URL
            token = value["token"] or os.environ.get("ERU_TOKEN") or read_token()
            timeout = DEFAULT_TIMEOUT if value["timeout"] is None else value["timeout"]
            printer = Printer(value["output"] or DEFAULT_OUTPUT)
            return int(handler(Client(url, token, timeout=timeout), printer, **kw))

        params += global_options(top=False, http_timeout=http_timeout)
        return Command(name, callback=callback, params=params, help=help, **attrs)

    return decorate


def path(name: Any) -> str:
    """A name as one URL path segment."""
    return quote(str(name), safe="")


# --- parameter types ----------------------------------------------------------------------------
if TYPE_CHECKING:  # generic in click's types since 8.5; plain classes before
    _ParamType = click.ParamType[Any, Any]
else:
    _ParamType = click.ParamType


class KeyValue(_ParamType):
    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"expected KEY=VALUE, got {value!r}", param, ctx)
        return key.strip(), text


class Size(_ParamType):
    """Bytes from 512M, 1.5G, 4096; signed (a delta may shrink)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        try:
            return schema.parse_size(str(value), field="size")
        except ValueError as exc:
            self.fail(str(exc).removeprefix("size: "), param, ctx)


KV = KeyValue()
SIZE = Size()


# --- resources (deploy, capacity, lambda) -------------------------------------------------------
def _help(name: str) -> str:
    return schema.help_of(schema.DeployRequest, name)


def _default(name: str) -> Any:
    return schema.default_of(schema.DeployRequest, name)


def bind_option(section: str | None = None, help: str | None = None) -> Callable[[Any], Any]:
    return option(
        "--cpu-bind/--cpu-unbind", "cpu_bind", default=None, section=section,
        help=help or f"{_help('cpu_bind')}; --cpu-unbind: do not pin, a CFS quota only",
    )  # fmt: skip


def resource_options(f: Any) -> Any:
    """--cpu/--memory (request and limit) and the specific flags, sent as given (sizes as text: the
    API reads them and names the field of a mistake)."""
    cpu, memory = _default("cpu_limit"), schema.format_size(_default("memory_limit"))
    section = f"resources (unset: the API's defaults, cpu limit {cpu:g} and memory limit {memory})"
    options = [
        option("--cpu", type=float, metavar="CPUS", section=section, help="cpu request and limit, e.g. 0.5"),
        option("--cpu-request", type=float, metavar="CPUS", section=section, help=_help("cpu_request")),
        option("--cpu-limit", type=float, metavar="CPUS", section=section, help=_help("cpu_limit")),
        option("--memory", metavar="SIZE", section=section, help="memory request and limit, e.g. 512M, 1G"),
        option("--memory-request", metavar="SIZE", section=section, help=_help("memory_request")),
        option("--memory-limit", metavar="SIZE", section=section, help=_help("memory_limit")),
        bind_option(section),
    ]
    for decorator in reversed(options):
        f = decorator(f)
    return f


RESOURCE_PARAMS = ("cpu", "cpu_request", "cpu_limit", "memory", "memory_request", "memory_limit", "cpu_bind")


def resources(res: Mapping[str, Any]) -> dict[str, Any]:
    """--cpu / --memory set request and limit; the specific flags win; unset flags use API defaults."""
    body: dict[str, Any] = {}
    for kind in ("cpu", "memory"):
        if res.get(kind) is not None:
            body[f"{kind}_request"] = body[f"{kind}_limit"] = res[kind]
        for part in ("request", "limit"):
            if res.get(f"{kind}_{part}") is not None:
                body[f"{kind}_{part}"] = res[f"{kind}_{part}"]
    if res.get("cpu_bind") is not None:
        body["cpu_bind"] = res["cpu_bind"]
    return body
