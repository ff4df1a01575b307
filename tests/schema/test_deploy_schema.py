"""The deploy request described once: the schema's fields, defaults per way in, error paths, and the
places that read it (the form's initial values and help, erucli's flags and body). No database."""

from __future__ import annotations

from typing import Any

import pytest

import schema
from clusters.forms import DeployForm

BASE = {"pod": "eru", "app": "web", "entrypoint": "main", "image": "eru/busybox:latest"}


def _errors(**fields: Any) -> dict[str, list[str]]:
    with pytest.raises(schema.SchemaError) as err:
        schema.DeployRequest.parse({**BASE, **fields})
    return err.value.errors


def test_defaults_are_erucli_s_for_the_portal_and_zero_for_grpc() -> None:
    portal = schema.DeployRequest.parse(BASE)
    assert (portal.cpu_limit, portal.memory_limit) == (1.0, 512 << 20)
    assert (portal.count, portal.strategy, portal.nodes_limit, portal.cpu_bind) == (1, "AUTO", 0, None)
    grpc = schema.DeployRequest.parse(BASE, entry="grpc")
    assert (grpc.cpu_limit, grpc.memory_limit) == (0.0, 0)
    given = schema.DeployRequest.parse({**BASE, "cpu_limit": 2}, entry="grpc")
    assert given.cpu_limit == 2.0  # a default never overrides what was given


def test_numbers_are_taken_as_text_and_names_trimmed_as_the_api_did() -> None:
    r = schema.DeployRequest.parse(
        {**BASE, "pod": " eru ", "command": ["sleep", 3600, " x "], "env": [" A=1 "], "node_names": [7]}
    )
    assert (r.pod, r.command, r.env, r.node_names) == ("eru", ["sleep", "3600", " x "], ["A=1"], ["7"])
    assert _errors(command=[True]) == {"command.0": ["command.0: input should be a valid string"]}


def test_values_are_normalised() -> None:
    r = schema.DeployRequest.parse(
        {**BASE, "app": " web ", "strategy": "fill", "memory_request": "1.5G", "node_names": ["b", "a", "b"]}
    )
    assert r.app == "web"
    assert r.strategy == "FILL"
    assert r.memory_request == 3 << 29
    assert r.node_names == ["a", "b"]
    assert schema.DeployRequest.parse({**BASE, "labels": {" zone ": 1}}).labels == {"zone": "1"}


def test_errors_carry_the_field_s_path_every_one_at_once() -> None:
    errors = _errors(
        count="many", command=["ok", None], labels={"a=b": "c"}, node_labels={"": "x"}, cpu_bind="maybe"
    )
    assert set(errors) == {"count", "command.1", "labels", "node_labels", "cpu_bind"}
    assert errors["count"] == ["count: input should be a valid integer, unable to parse string as an integer"]
    assert errors["command.1"] == ["command.1: input should be a valid string"]
    assert errors["labels"] == ["label key 'a=b' must be a non-empty string without '='"]


def test_a_missing_field_is_named() -> None:
    with pytest.raises(schema.SchemaError) as err:
        schema.DeployRequest.parse({"pod": "eru"})
    assert err.value.errors == {
        "app": ["app: this field is required"],
        "entrypoint": ["entrypoint: this field is required"],
        "image": ["image: this field is required"],
    }


def test_the_capacity_input_has_no_app_entrypoint_or_image() -> None:
    placement = schema.Placement.parse({"pod": "eru", "cpu_limit": 0.5})
    assert set(schema.Placement.model_fields) == {"pod", "node_names", "node_labels", *schema.RESOURCE_FIELDS}
    assert placement.cpu_limit == 0.5


def test_the_openapi_schema_of_the_request_comes_from_the_model() -> None:
    json_schema = schema.DeployRequest.model_json_schema()
    assert set(json_schema["required"]) == {"pod", "app", "entrypoint", "image"}
    assert json_schema["properties"]["cpu_limit"]["default"] == 1.0
    assert "0 = unlimited" in json_schema["properties"]["cpu_limit"]["description"]


def test_the_form_takes_its_defaults_and_help_from_the_schema() -> None:
    form = DeployForm(node_names=[])
    assert form.fields["cpu_limit"].initial == schema.default_of(schema.DeployRequest, "cpu_limit")
    assert form.fields["memory_limit"].initial == "512M"
    assert form.fields["memory_request"].initial == ""
    assert form.fields["count"].initial == 1
    assert form.fields["cpu_limit"].help_text == schema.help_of(schema.DeployRequest, "cpu_limit")
    assert [c for c, _ in form.fields["strategy"].choices] == list(schema.STRATEGIES)


def test_a_health_check_in_eru_s_shape() -> None:
    r = schema.DeployRequest.parse({**BASE, "healthcheck": {"tcp_ports": [8080, "9090"], "http_port": "80"}})
    assert r.healthcheck is not None
    assert r.healthcheck.model_dump() == {
        "tcp_ports": ["8080", "9090"],
        "http_port": "80",
        "url": "/",
        "code": 0,
    }
    assert r.healthcheck.eru_json() == {
        "TCPPorts": ["8080", "9090"],
        "HTTPPort": "80",
        "HTTPURL": "/",
        "HTTPCode": 0,
    }
    assert schema.DeployRequest.parse(BASE).healthcheck is None


@pytest.mark.parametrize(
    ("healthcheck", "path", "fragment"),
    [
        ({}, "healthcheck", "give tcp_ports, an http_port, or both"),
        ({"tcp_ports": ["http"]}, "healthcheck.tcp_ports", "not a port from 1 to 65535"),
        ({"http_port": 70000}, "healthcheck.http_port", "not a port from 1 to 65535"),
        ({"http_port": "80", "url": "healthz"}, "healthcheck.url", "a path such as /healthz"),
        ({"http_port": "80", "code": 42}, "healthcheck.code", "an HTTP status from 100 to 599"),
    ],
)
def test_a_bad_health_check_names_its_field(healthcheck: dict[str, Any], path: str, fragment: str) -> None:
    errors = _errors(healthcheck=healthcheck)
    assert fragment in errors[path][0]
