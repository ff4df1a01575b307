"""The OpenAPI document against the server, in process (fast tier: rows only, no Docker, no etcd):
schemathesis draws 200 cases from the live /api/schema/ for the reads and the validation-heavy
writes that change nothing (deploy plan and capacity), sends them with a deployer's token through
Django's WSGI app, and fails on any 5xx, any undocumented status code or content type, and any body
that does not match its documented schema. The bounded run against a live server with every
operation, creates included, is bench/fuzz.py."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clusters import etcd, services
from clusters.models import PodMember
from tests.factories import DeploymentFactory, NodeFactory, PodFactory, PodMemberFactory, WorkloadFactory

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
WRITES = {("POST", "/api/deployments/plan/"), ("POST", "/api/deployments/capacity/")}
STREAMS = ("/logs/", "/output/")  # NDJSON from Docker: the services tier's


@pytest.fixture
def rows(db: Any, deployer: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Pod eru with two up nodes, a deployment of three workloads and dora as its deployer; her token."""
    monkeypatch.setattr(etcd, "alive_nodes", lambda **_: {"n1", "n2"})
    pod = PodFactory()
    PodMemberFactory(pod=pod, user=deployer, role=PodMember.Role.DEPLOYER)
    n1, n2 = NodeFactory(name="n1", pod=pod), NodeFactory(name="n2", pod=pod)
    d = DeploymentFactory(pod=pod, pod_name="eru", created_by=deployer)
    for node in (n1, n2, n1):
        WorkloadFactory(node=node, deployment=d)
    _, token = services.token_create(actor=services.SYSTEM, user=deployer, name="fuzz")
    return token


@pytest.fixture
def app() -> Iterator[Any]:
    """Django's WSGI app, minus what closes the database connection after each request (as the
    test client does): the rows live in the test's transaction."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield get_wsgi_application()
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def test_the_server_answers_as_its_schema_says(rows: str, app: Any) -> None:
    api = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)
    operations = [
        op
        for result in api.get_all_operations()
        if (op := result.ok())
        and not op.path.endswith(STREAMS)
        and (op.method.upper() == "GET" or (op.method.upper(), op.path) in WRITES)
    ]
    assert len(operations) > 20
    headers = {"Authorization": f"Token {rows}"}

    @settings(
        max_examples=int(os.environ.get("ERU_FUZZ_CASES", "200")),
        deadline=None,
        database=None,
        derandomize=not os.environ.get("ERU_FUZZ_CASES"),
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: st.DataObject) -> None:
        op = data.draw(st.sampled_from(operations), label="operation")
        mode = data.draw(st.sampled_from(list(GenerationMode)), label="mode")
        case = data.draw(op.as_strategy(generation_mode=mode), label="case")
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        seen[response.status_code // 100] += 1

    seen: Counter[int] = Counter()
    run()
    assert seen[2], seen  # the cases reached the views: answers…
    assert seen[4], seen  # …and refusals
