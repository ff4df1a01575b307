"""Env values are secrets (passwords, tokens): what a reader who may not see them gets instead, and
what the audit log keeps of them.

- `mask_env` / `mask_spec`: for a pod's viewers (clusters.permissions.can_see_secrets says who):
  every "KEY=value" becomes "KEY=" + MASK, the key kept, the value replaced by one fixed marker
  (never its length); a spec file's raw text, which a reader cannot mask safely, is left out.
- `digest_env` / `digest_audit`: the audit log never keeps a value in clear, only a keyed digest
  of each entry (HMAC-SHA256 under the server's SECRET_KEY, its first 16 hex digits): two rows
  show whether a value changed, and nobody without the key can test a guess against it. A new
  SECRET_KEY makes new digests (a value then looks changed once).
- `scrub_audit`: what the audit pages and the API show of a row: a clear env left in one (there
  should be none) is digested on the way out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.utils.crypto import salted_hmac

MASK = "******"
DIGEST_PREFIX = "hmac-sha256:"
_SALT = "clusters.secrets.env"
_ENV_KEYS = ("env",)  # where a structure (a deploy request, an audit row) holds "KEY=value" entries
_RAW = ("spec",)  # a spec file's text (or mapping) as given: left out for those who may not see


def mask_entry(entry: Any) -> Any:
    """An entry KEY=value becomes KEY=******; a bare KEY (exec's audit keeps keys only) stays."""
    if not isinstance(entry, str):
        return MASK
    key, eq, _ = entry.partition("=")
    return f"{key}={MASK}" if eq else key


def mask_env(env: Iterable[Any] | None) -> list[Any]:
    return [mask_entry(e) for e in env or ()]


def mask_spec(spec: Any) -> Any:
    """A copy of a structure (a deployment's spec) with every env list masked and raw spec text
    left out, at any depth."""
    if isinstance(spec, Mapping):
        out: dict[str, Any] = {}
        for k, v in spec.items():
            if k in _RAW:
                continue
            out[k] = mask_env(v) if k in _ENV_KEYS and isinstance(v, list) else mask_spec(v)
        return out
    if isinstance(spec, list):
        return [mask_spec(v) for v in spec]
    return spec


def digest(entry: str) -> str:
    """The keyed digest of one "KEY=value" entry (the key in it: equal values under two keys
    digest apart)."""
    return DIGEST_PREFIX + salted_hmac(_SALT, entry, algorithm="sha256").hexdigest()[:16]


def digest_env(env: Iterable[Any] | None) -> dict[str, str]:
    """KEY -> digest of its entry (a key given twice: the last, as Docker takes it)."""
    out: dict[str, str] = {}
    for entry in env or ():
        text = entry if isinstance(entry, str) else repr(entry)
        key, eq, _ = text.partition("=")
        if eq:
            out[key] = digest(text)
        else:
            out[key] = ""  # a key without a value: nothing secret in it
    return out


def _is_clear_env(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(e, str) and "=" in e for e in value)


def digest_audit(data: Any) -> Any:
    """A copy of an audit row's before/after with every env list of "KEY=value" entries replaced by
    digest_env's map, and raw spec text by a digest of it, at any depth."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            if k in _ENV_KEYS and _is_clear_env(v):
                out[k] = digest_env(v)
            elif k in _RAW and isinstance(v, str):
                out[k] = digest(v)
            else:
                out[k] = digest_audit(v)
        return out
    if isinstance(data, list):
        return [digest_audit(v) for v in data]
    return data


scrub_audit = digest_audit  # on the way out: the same rule, for a row written before it
