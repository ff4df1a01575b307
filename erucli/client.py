"""A small requests-based client for the Eru portal REST API, and where the login token lives.

Every request carries `X-Eru-Client: cli`, so the audit log records `via=cli`. Every failure is an
`ApiError` whose `lines` are ready to print as `error: ...` lines."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "erucli/0.1 (eru portal)"


class ApiError(Exception):
    """An answer other than 2xx, or no answer at all. `lines` are human-readable messages."""

    def __init__(self, lines: list[str], status: int | None = None) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines
        self.status = status


# --- where the token lives ----------------------------------------------------------------------
def config_dir() -> Path:
    """$XDG_CONFIG_HOME/eru, else ~/.config/eru."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "eru"


def token_path() -> Path:
    return config_dir() / "token"


def read_token() -> str:
    """The token saved by `erucli login`, or "" when there is none."""
    try:
        return token_path().read_text().strip()
    except OSError:
        return ""


def save_token(token: str) -> Path:
    """Write the token readable by its owner only (0600, directory 0700)."""
    path = token_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # an older file may have had another mode
        f.write(token + "\n")
    return path


def normalize_url(url: str) -> str:
    """Eru's `ERU=127.0.0.1:5001` style (no scheme) is accepted: http:// is assumed."""
    url = (url or DEFAULT_URL).strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


# --- error messages -----------------------------------------------------------------------------
def _flatten(detail: Any, prefix: str = "") -> list[str]:
    """DRF error bodies: {"field": ["msg"]}, {"detail": "msg"}, ["msg"], nested dicts for maps."""
    if isinstance(detail, Mapping):
        lines: list[str] = []
        for key, value in detail.items():
            if key in ("detail", "non_field_errors") and not prefix:
                lines.extend(_flatten(value))
            else:
                lines.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return lines
    if isinstance(detail, list):
        return [line for item in detail for line in _flatten(item, prefix)]
    text = str(detail)
    return [f"{prefix}: {text}" if prefix and not text.startswith(f"{prefix}:") else text]


def error_lines(response: requests.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())[:200]
        return [f"HTTP {response.status_code} {response.reason}" + (f": {text}" if text else "")]
    lines = _flatten(body) or [f"HTTP {response.status_code} {response.reason}"]
    if response.status_code == 401:
        lines.append("log in with `erucli login`, or pass --token / set ERU_TOKEN")
    return lines


# --- the client ---------------------------------------------------------------------------------
class Client:
    def __init__(self, base_url: str, token: str = "", *, timeout: float = 30.0) -> None:
        self.base_url = normalize_url(base_url)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"X-Eru-Client": "cli", "User-Agent": USER_AGENT})
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def url(self, path: str) -> str:
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        ok_404: bool = False,
    ) -> Any:
        """The decoded JSON body (None when empty). Raises ApiError; with ok_404, 404 gives None."""
        url = self.url(path)
        try:
            response = self.session.request(method, url, json=json, params=params, timeout=self.timeout)
        except requests.ConnectionError as exc:
            raise ApiError([f"cannot connect to the Eru API at {self.base_url} ({_reason(exc)})"]) from exc
        except requests.Timeout as exc:
            raise ApiError(
                [f"no answer from the Eru API at {self.base_url} within {self.timeout:g}s"]
            ) from exc
        except requests.RequestException as exc:
            raise ApiError([f"request to {url} failed: {exc}"]) from exc
        if ok_404 and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ApiError(error_lines(response), response.status_code)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError([f"{url} answered {response.status_code} with something other than JSON"]) from exc

    def stream(
        self, path: str, *, method: str = "GET", body: Any = None, **params: Any
    ) -> Iterator[dict[str, Any]]:
        """The JSON objects of an NDJSON stream (a log, an exec's output), as they come; blank
        keep-alive lines skipped. No read timeout: a follow may be quiet for long (the server says
        something every few seconds)."""
        url = self.url(path)
        try:
            response = self.session.request(
                method, url, params={k: v for k, v in params.items() if v not in (None, "")}, json=body,
                stream=True, timeout=(self.timeout, None),
            )  # fmt: skip
        except requests.RequestException as exc:
            raise ApiError([f"cannot connect to the Eru API at {self.base_url} ({exc})"]) from exc
        with response:
            if response.status_code >= 400:
                raise ApiError(error_lines(response), response.status_code)
            try:
                for raw in response.iter_lines():
                    if raw:
                        yield json.loads(raw)
            except requests.RequestException as exc:
                raise ApiError([f"the stream from {url} broke off ({exc})"]) from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v not in (None, "")})

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def iter_all(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, following `next` links."""
        page: Any = self.get(path, **params)
        while True:
            if isinstance(page, list):  # an unpaginated list
                yield from page
                return
            yield from page.get("results", [])
            if not page.get("next"):
                return
            page = self.request("GET", page["next"])

    def list_all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        return list(self.iter_all(path, **params))


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if marker in text:
            return marker.lower()
    return text[:200]
