"""The OpenAPI document's error answers, added to every operation by one postprocessing hook
(SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) so that the schema says what the server does:

- 400 `ValidationError` (field → messages) on any operation that takes a body or query parameters;
- 401 and 403 `Error` on every operation that needs a caller (all but the token exchange);
- 404 `Error` on every operation with a path parameter, on lists filtered by a pod and on writes (a
  pod one may not see, named in a body or a filter, is a 404);
- 429 `Error` with Retry-After where the view is throttled;
- a nullable JSON field's `oneOf: [{}, {type: null}]` (which null fails) becomes `{}`;
- on creates marked `clusters.idempotency.idempotent`: the `Idempotency-Key` header, 409 while the first
  request with a key runs, and 422 when a key is reused with another body.

An operation that documents a code itself keeps its own answer."""

from __future__ import annotations

from typing import Any

from clusters.idempotency import HEADER, MAX_KEY, TTL, is_idempotent
from clusters.pagination import MAX_PAGE_SIZE

ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "DRF's error shape: what went wrong, in a sentence.",
}
VALIDATION_ERROR = {
    "type": "object",
    "description": (
        "Field errors: each field (or `non_field_errors`) with its messages, naming the field and the "
        "limit; nested fields as nested objects."
    ),
    "additionalProperties": {},
}
WRITES = {"post", "put", "patch"}


def _answer(description: str, name: str = "Error", headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _views(generator: Any) -> dict[tuple[str, str], tuple[type, str | None]]:
    """(path, method) → (the view class, its viewset action) for every endpoint in the document."""
    views: dict[tuple[str, str], tuple[type, str | None]] = {}
    for path, _regex, method, callback in getattr(generator, "endpoints", None) or []:
        actions = getattr(callback, "actions", None) or {}
        views[(path, method.lower())] = (callback.cls, actions.get(method.lower()))
    return views


def _any_json(node: Any) -> Any:
    """drf-spectacular writes a nullable JSONField as `oneOf: [{}, {type: null}]`, which no value
    matches (null matches both, and oneOf takes exactly one): `{}` (any JSON, null included) says it."""
    if isinstance(node, list):
        return [_any_json(n) for n in node]
    if not isinstance(node, dict):
        return node
    choices = node.get("oneOf")
    if isinstance(choices, list) and {} in choices:
        return {k: _any_json(v) for k, v in node.items() if k != "oneOf"}
    return {k: _any_json(v) for k, v in node.items()}


def _throttled(view: type) -> bool:
    return bool(getattr(view, "throttle_classes", None))


def add_error_responses(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("ValidationError", VALIDATION_ERROR)
    result["components"]["schemas"] = _any_json(schemas)
    views = _views(generator)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            view, action = views.get((path, method), (None, None))
            _document(operation, path, method, view, action)
    return result


def _document(
    operation: dict[str, Any], path: str, method: str, view: type | None, action: str | None
) -> None:
    responses: dict[str, Any] = operation["responses"]
    params = operation.get("parameters", [])
    names = {p.get("name") for p in params if p.get("in") == "query"}
    codes: dict[str, dict[str, Any]] = {}
    if method in WRITES or "requestBody" in operation or names:
        codes["400"] = _answer("Invalid input: the fields and why", "ValidationError")
    if operation.get("security") != [{}]:
        codes["401"] = _answer("No credentials, or a token that is invalid, revoked or expired")
        codes["403"] = _answer("Not allowed (a viewer's write, a read-only token's write, …)")
    if "{" in path or "pod" in names or method in WRITES:
        codes["404"] = _answer("Not found, or not visible to the caller")
    if view is not None and _throttled(view):
        retry = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        codes["429"] = _answer("Too many attempts from this client", headers=retry)
    if view is not None and action and is_idempotent(getattr(view, action, None)):
        codes["409"] = _answer(f"The first request with this {HEADER} is still being answered")
        codes["422"] = _answer(f"{HEADER} already used with another body (within {TTL // 3600} h)")
        if not any(p.get("name") == HEADER for p in params):
            operation.setdefault("parameters", []).append(
                {
                    "name": HEADER,
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": MAX_KEY},
                    "description": (
                        f"Retry safely: a request with the same key and body within {TTL // 3600} h "
                        "answers the first one's status and body and does nothing again."
                    ),
                }
            )
    for code, answer in codes.items():
        responses.setdefault(code, answer)
    if "limit" in names:
        for p in params:
            if p.get("name") == "limit":
                p["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}
                p["description"] = f"Number of results to return per page (at most {MAX_PAGE_SIZE})."
