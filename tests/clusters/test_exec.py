"""A command run in a workload's container (non-interactive exec): on the real nodes through the API
and the portal (both streams, the exit code, the time limit, a container gone behind our back), who
may (staff and owners, not deployers or viewers), the audit row; and, on rows only, the input checks
and who sees the portal's form."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from clusters import services
from clusters.models import AuditEvent, Node, Pod, PodMember, Workload
from tests.conftest import wait_for
from tests.factories import PodMemberFactory, UserFactory, WorkloadFactory

SCRIPT = ["sh", "-c", "echo out; echo err >&2; exit 3"]
HX = {"HX-Request": "true"}
Login = Callable[[Any], Client]


def _api(user: Any) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def _events(response: Any) -> list[dict[str, Any]]:
    """The NDJSON lines of a streamed answer, read to its end (empty keep-alive lines left out)."""
    assert response["Content-Type"] == "application/x-ndjson"
    body = b"".join(response.streaming_content)
    response.close()
    return [json.loads(line) for line in body.split(b"\n") if line]


def _exec(who: Any, w: Workload, **body: Any) -> Any:
    return _api(who).post(f"/api/workloads/{w.pk}/exec/", body, format="json")


def _text(events: list[dict[str, Any]], stream: str) -> str:
    return "".join(e["data"] for e in events if e.get("stream") == stream)


def _owner(pod: Pod) -> Any:
    owner = UserFactory(username="owen", password="pw-owen-1")
    PodMember.objects.create(pod=pod, user=owner, role=PodMember.Role.OWNER)
    return owner


def _exec_rows() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.WORKLOAD_EXEC).order_by("pk"))


# --- on the real nodes ----------------------------------------------------------------------------
@pytest.mark.services
def test_exec_streams_stdout_and_stderr_then_the_exit_code_and_is_audited(
    deploy: Callable[..., Any], admin_user: Any
) -> None:
    w = deploy("sleep", "600")
    response = _exec(admin_user, w, command=SCRIPT)
    assert response.status_code == 200
    events = _events(response)
    assert _text(events, "stdout") == "out\n"
    assert _text(events, "stderr") == "err\n"
    assert events[-1] == {"exit_code": 3}
    (row,) = _exec_rows()
    assert (row.actor, row.via, row.target_name, row.pod) == (admin_user, "api", w.name, w.pod)
    assert row.after["command"] == SCRIPT
    assert row.after["exit_code"] == 3  # how it ended, on the same row once the stream ended

    secret = _exec(admin_user, w, command=["sh", "-c", "echo $SECRET; pwd; id -un"], env=["SECRET=hunter2"],
                   workdir="/tmp", user="nobody")  # fmt: skip
    assert _text(_events(secret), "stdout") == "hunter2\n/tmp\nnobody\n"
    row = _exec_rows()[-1]
    assert row.after["env"] == ["SECRET"]  # the keys, never the values
    assert "hunter2" not in json.dumps(row.after)
    assert (row.after["workdir"], row.after["user"], row.after["exit_code"]) == ("/tmp", "nobody", 0)


@pytest.mark.services
def test_only_staff_and_the_pods_owners_may_exec(
    deploy: Callable[..., Any], admin_user: Any, deployer: Any, viewer: Any, outsider: Any
) -> None:
    w = deploy("sleep", "600")
    PodMember.objects.create(pod=w.pod, user=deployer, role=PodMember.Role.DEPLOYER)
    PodMember.objects.create(pod=w.pod, user=viewer, role=PodMember.Role.VIEWER)
    owner = _owner(w.pod)
    for user in (viewer, deployer):
        refused = _exec(user, w, command=["true"])
        assert refused.status_code == 403
        assert "owner" in refused.json()["detail"]
    assert _exec(outsider, w, command=["true"]).status_code == 404
    assert not _exec_rows()
    for user in (owner, admin_user):
        response = _exec(user, w, command=["true"])
        assert response.status_code == 200
        assert _events(response)[-1] == {"exit_code": 0}
    assert [row.actor for row in _exec_rows()] == [owner, admin_user]


@pytest.mark.services
def test_a_stopped_workload_is_a_400_and_leaves_no_audit_row(
    deploy: Callable[..., Any], admin_user: Any
) -> None:
    w = deploy("sleep", "600")
    services.workload_control(actor=services.SYSTEM, workload=w, action="stop")
    wait_for(lambda: Workload.objects.get(pk=w.pk).state == Workload.State.STOPPED)
    response = _exec(admin_user, w, command=["true"])
    assert response.status_code == 400
    assert response.json() == {"workload": [f"workload {w.name} is stopped; exec needs a running container"]}
    assert not _exec_rows()


@pytest.mark.services
def test_the_time_limit_stops_the_reading_and_says_so(deploy: Callable[..., Any], admin_user: Any) -> None:
    w = deploy("sleep", "600")
    started = time.monotonic()
    events = _events(_exec(admin_user, w, command=["sh", "-c", "echo early; sleep 60"], timeout=1))
    assert time.monotonic() - started < 10
    assert _text(events, "stdout") == "early\n"
    last = events[-1]
    assert (last["exit_code"], last["timed_out"]) == (None, True)
    assert "Docker cannot stop" in last["message"]
    assert _exec_rows()[-1].after["timed_out"] is True


@pytest.mark.services
def test_a_container_gone_behind_our_back_ends_the_stream_with_an_error(
    deploy: Callable[..., Any], admin_user: Any, docker_clean: dict[str, Any]
) -> None:
    w = deploy("sleep", "600")
    docker_clean["node1"].containers.get(w.container_id).remove(force=True)
    response = _exec(admin_user, w, command=["true"])
    assert response.status_code == 200  # the stream had begun: the error is its last line
    (last,) = _events(response)
    assert last["error"].startswith("exec: not found")
    assert _exec_rows()[-1].after["error"] == last["error"]


@pytest.mark.services
def test_the_portal_form_runs_a_command_line_and_streams_its_output(
    deploy: Callable[..., Any], deployer: Any
) -> None:
    w = deploy("sleep", "600")
    owner = _owner(w.pod)
    PodMember.objects.create(pod=w.pod, user=deployer, role=PodMember.Role.DEPLOYER)
    client = Client()
    client.force_login(owner)
    line = "sh -c 'echo out; echo err >&2; exit 3'"  # split as a shell would (shlex)
    response = client.post(reverse("clusters:workload-exec", args=[w.pk]), {"command": line, "env": ""})
    assert response.status_code == 200
    events = _events(response)
    assert (_text(events, "stdout"), _text(events, "stderr"), events[-1]) == (
        "out\n",
        "err\n",
        {"exit_code": 3},
    )
    (row,) = _exec_rows()
    assert (row.via, row.after["command"]) == ("ui", SCRIPT)
    client.force_login(deployer)
    refused = client.post(reverse("clusters:workload-exec", args=[w.pk]), {"command": "true"})
    assert refused.status_code == 403
    assert "owner" in refused.json()["detail"]


# --- on rows: the input, the state, the form ------------------------------------------------------
@pytest.fixture
def w1(ui_members: Pod, ui_node: Callable[..., Node]) -> Workload:
    return WorkloadFactory(node=ui_node("n1"), name="web_main_aaaaaa", container_id="ab" * 32)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({}, "command", "command: a non-empty list"),
        ({"command": []}, "command", "command: a non-empty list"),
        ({"command": "ls -l"}, "command", "command: a non-empty list"),
        ({"command": ["ls", 1]}, "command", "command[1]: must be a string, not int"),
        ({"command": [""]}, "command", "command[0]: the program to run cannot be empty"),
        ({"command": ["x" * 4097]}, "command", "command[0]: 4097 characters is above the limit of 4096"),
        ({"command": ["echo"] * 257}, "command", "command: 257 entries is above the limit of 256"),
        ({"command": ["env"], "env": "A=1"}, "env", "env: a list of KEY=value entries"),
        ({"command": ["env"], "env": ["A"]}, "env", "env[0]: 'A' must look like KEY=value"),
        ({"command": ["pwd"], "workdir": "tmp"}, "workdir", "workdir: 'tmp' must be an absolute path"),
        ({"command": ["id"], "user": "a b"}, "user", "user: 'a b' must be a name or uid"),
        ({"command": ["true"], "timeout": 0}, "timeout", "timeout: seconds, an integer from 1 to 600"),
        ({"command": ["true"], "timeout": 601}, "timeout", "timeout: seconds, an integer from 1 to 600"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_runs_nothing(
    w1: Workload, admin_user: Any, body: dict[str, Any], field: str, says: str
) -> None:
    response = _exec(admin_user, w1, **body)
    assert response.status_code == 400
    (message,) = response.json()[field]
    assert message.startswith(says), message
    assert not _exec_rows()


@pytest.mark.django_db
def test_a_body_that_is_no_object_is_a_400(w1: Workload, admin_user: Any) -> None:
    response = _api(admin_user).post(f"/api/workloads/{w1.pk}/exec/", ["ls"], format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["expected an object of exec fields"]}


@pytest.mark.django_db
def test_a_running_workload_whose_container_exited_is_a_400(w1: Workload, admin_user: Any) -> None:
    Workload.objects.filter(pk=w1.pk).update(status=Workload.Status.EXITED)
    response = _exec(admin_user, w1, command=["true"])
    assert response.json() == {"workload": [f"workload {w1.name} is exited; exec needs a running container"]}


@pytest.mark.django_db
def test_a_portal_command_line_that_does_not_split_is_a_400(w1: Workload, ui_client: Login) -> None:
    owner = _owner(w1.pod)
    response = ui_client(owner).post(
        reverse("clusters:workload-exec", args=[w1.pk]), {"command": "echo 'oops"}
    )
    assert response.status_code == 400
    assert response.json() == {"command": ["command: No closing quotation"]}
    assert not _exec_rows()


@pytest.mark.django_db
def test_owners_and_staff_get_the_exec_form_and_others_do_not(
    w1: Workload, ui_client: Login, admin_user: Any, deployer: Any, viewer: Any, outsider: Any
) -> None:
    owner = PodMemberFactory(pod=w1.pod, user=UserFactory(username="owen"), role=PodMember.Role.OWNER).user
    page, form = (
        reverse("clusters:workload-detail", args=[w1.pk]),
        reverse("clusters:workload-exec", args=[w1.pk]),
    )
    for user in (owner, admin_user):
        client = ui_client(user)
        assert f'hx-get="{form}"' in client.get(page).content.decode()  # the page's slot loads the form
        body = client.get(form, headers=HX).content.decode()
        assert f'<form method="post" action="{form}"' in body
        assert 'name="command"' in body
    for user in (deployer, viewer):
        client = ui_client(user)
        empty = client.get(form, headers=HX)
        assert (empty.status_code, empty.content) == (204, b"")  # the slot stays empty
        assert client.get(form).status_code == 403
        assert f'action="{form}"' not in client.get(page).content.decode()  # no exec form inline
    assert f'hx-get="{form}"' not in ui_client(viewer).get(page).content.decode()
    assert ui_client(outsider).get(form, headers=HX).status_code == 404
