"""Secrets (issue 13): no env value reaches a pod's viewer on any read path, logs are not a viewer's,
the audit log keeps digests only, the etcd mirror leaves env out unless told, and a removed pod's
deployments and audit rows stay findable by its name.

One table drives the read paths: each path × persona, with a real value (DB_PASSWORD=hunter2) looked
for in the whole body. Logs come from a stand-in for the engine that prints the secret (a container's
log does, often): Docker is not needed to see who may read it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from clusters import lambda_output, logs, secrets, services, sync
from clusters.models import AuditEvent, Deployment, LambdaRun, Node, Pod, PodMember, Workload
from engine.logs import LogLine
from tests.factories import DeploymentFactory, PodFactory, PodMemberFactory, UserFactory, WorkloadFactory

pytestmark = pytest.mark.django_db
SECRET = "hunter2"
ENV = [f"DB_PASSWORD={SECRET}", "MODE=prod"]
MASKED = f"DB_PASSWORD={secrets.MASK}"
ROOT = Path(__file__).resolve().parents[2]
Login = Callable[[Any], Client]


@dataclass(frozen=True)
class World:
    pod: Pod
    deployment: Deployment
    workload: Workload
    run: LambdaRun


def _request(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "app": "web", "entrypoint": "main", "image": "eru/busybox:latest", "command": ["sleep", "3600"],
        "env": ENV, "count": 1, "cpu_limit": 0.1, "memory_limit": "32M", "cpu_bind": False, **data,
    }  # fmt: skip


def _logs_print_the_secret(w: Workload, **_: Any) -> Any:
    yield LogLine("stdout", "2026-01-01T00:00:00.000000001Z", f"connecting as app:{SECRET}")


@pytest.fixture
def world(
    ui_members: Pod,
    ui_node: Callable[..., Node],
    ui_alive: set[str],
    ui_enqueued: list[Any],
    deployer: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    """Made by the services as a deployer would: a deployment with the secret in its env, its
    workload (with a container that has exited: its page shows why and its last lines), and a
    lambda run with the same env whose output printed it."""
    ui_alive.add("n1")
    ui_node("n1")
    actor = services.Actor(user=deployer, via="api")
    d = services.deployment_create(
        actor=actor, spec=services.deployment_validate(pod=ui_members, data=_request({}))
    )
    Workload.objects.filter(deployment=d).update(
        container_id="c" * 64, state=Workload.State.RUNNING, status=Workload.Status.EXITED, exit_code=1
    )
    lam = services.deployment_validate(pod=ui_members, data=_request({"app": "lambda", "entrypoint": "run"}))
    run = services.lambda_create(actor=actor, spec=lam, timeout=60)
    LambdaRun.objects.filter(pk=run.pk).update(
        state=LambdaRun.State.DONE,
        exit_code=0,
        output=lambda_output.kept_line(0, f"DB_PASSWORD={SECRET}"),
        finished_at=timezone.now(),
    )
    monkeypatch.setattr(logs, "lines", _logs_print_the_secret)
    monkeypatch.setattr(lambda_output, "exists", lambda run_id: False)
    return World(ui_members, d, d.workloads.get(), LambdaRun.objects.get(pk=run.pk))


@dataclass(frozen=True)
class ReadPath:
    name: str
    path: Callable[[World], str]
    api: bool = False
    log: bool = False  # a log: a viewer is refused (403)
    shows_env: bool = True  # a deployer sees the value here (the audit log shows it to no one)
    masks: bool = False  # a viewer sees the key, its value masked


def _page(name: str, *args: Callable[[World], Any]) -> Callable[[World], str]:
    return lambda w: reverse(f"clusters:{name}", args=[a(w) for a in args])


DEPLOYMENT: Callable[[World], int] = lambda w: w.deployment.pk  # noqa: E731
WORKLOAD: Callable[[World], int] = lambda w: w.workload.pk  # noqa: E731
RUN: Callable[[World], int] = lambda w: w.run.pk  # noqa: E731


def DEPLOY_EVENT(w: World) -> int:  # noqa: N802  (named as the accessors above)
    kind = AuditEvent.Action.DEPLOYMENT_CREATE
    return AuditEvent.objects.get(action=kind, target_type="deployment", target_id=str(w.deployment.pk)).pk


READ_PATHS = [
    ReadPath("api workload list", lambda w: "/api/workloads/", api=True, masks=True),
    ReadPath("api workload", lambda w: f"/api/workloads/{w.workload.pk}/", api=True, masks=True),
    ReadPath("api deployment list", lambda w: "/api/deployments/", api=True, masks=True),
    ReadPath("api deployment", lambda w: f"/api/deployments/{w.deployment.pk}/", api=True, masks=True),
    ReadPath("api audit", lambda w: "/api/audit/", api=True, shows_env=False),
    ReadPath("api lambda list", lambda w: "/api/lambdas/", api=True),
    ReadPath("api lambda", lambda w: f"/api/lambdas/{w.run.pk}/", api=True),
    ReadPath("api workload logs", lambda w: f"/api/workloads/{w.workload.pk}/logs/", api=True, log=True),
    ReadPath(
        "api workload logs followed",
        lambda w: f"/api/workloads/{w.workload.pk}/logs/?follow=1",
        api=True,
        log=True,
    ),
    ReadPath("api merged logs", lambda w: "/api/workloads/logs/?app=web", api=True, log=True),
    ReadPath(
        "api deployment's logs",
        lambda w: f"/api/workloads/logs/?deployment={w.deployment.pk}",
        api=True,
        log=True,
    ),
    ReadPath("api lambda output", lambda w: f"/api/lambdas/{w.run.pk}/output/", api=True, log=True),
    ReadPath("workload page", _page("workload-detail", WORKLOAD), masks=True),
    ReadPath("workload page's log (SSE)", _page("workload-logs", WORKLOAD), log=True),
    ReadPath("deployment page", _page("deployment-detail", DEPLOYMENT), masks=True),
    ReadPath("deployment page's log (SSE)", _page("deployment-logs", DEPLOYMENT), log=True),
    ReadPath("deployment page's did-not-come-up", _page("deployment-down", DEPLOYMENT)),
    ReadPath("audit page", _page("audit-list"), shows_env=False),
    ReadPath("audit event page", _page("audit-detail", DEPLOY_EVENT), shows_env=False),
    ReadPath("audit export (CSV)", _page("audit-export", lambda w: "csv"), shows_env=False),
    ReadPath("audit export (JSON)", _page("audit-export", lambda w: "json"), shows_env=False),
    ReadPath("lambda list page", _page("lambda-list"), shows_env=False),  # command and state only
    ReadPath("lambda page", _page("lambda-detail", RUN), shows_env=False),  # its output is the log below
    ReadPath("lambda page's output (SSE)", _page("lambda-output", RUN), log=True),
]


def _body(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return str(response.content.decode())


def _get(user: Any, read: ReadPath, w: World) -> Any:
    client: Client | APIClient
    if read.api:
        client = APIClient()
        client.force_authenticate(user)
    else:
        client = Client()
        client.force_login(user)
    return client.get(read.path(w))


@pytest.mark.parametrize("read", READ_PATHS, ids=lambda r: r.name)
def test_a_viewer_finds_no_env_value_on_any_read_path(world: World, viewer: Any, read: ReadPath) -> None:
    response = _get(viewer, read, world)
    body = _body(response)
    assert response.status_code == (403 if read.log else 200), body[:300]
    assert SECRET not in body
    if read.masks:
        assert MASKED in body  # the key is there, its value is not, nor its length
    if read.log and read.api:
        assert "Logs may carry secrets" in body  # why, for erucli and scripts


@pytest.mark.parametrize("read", READ_PATHS, ids=lambda r: r.name)
@pytest.mark.parametrize("persona", ["deployer", "admin_user"])
def test_a_deployer_and_staff_see_the_values_except_in_the_audit_log(
    world: World, request: pytest.FixtureRequest, persona: str, read: ReadPath
) -> None:
    response = _get(request.getfixturevalue(persona), read, world)
    body = _body(response)
    assert response.status_code == 200, body[:300]
    assert (SECRET in body) is read.shows_env
    assert MASKED not in body


def test_the_read_paths_table_covers_every_url_that_shows_env_or_logs() -> None:
    """A new page or endpoint that shows a workload, a deployment, a lambda or a log belongs in the
    table above (checked by name: the URL names of the portal's read views)."""
    covered = {"workload-detail", "workload-logs", "deployment-detail", "deployment-logs",
               "deployment-down", "audit-list", "audit-detail", "audit-export", "lambda-list",
               "lambda-detail", "lambda-output"}  # fmt: skip
    from clusters.urls import urlpatterns

    readers = {
        p.name
        for p in urlpatterns
        if p.name and p.name.startswith(("workload-", "deployment-", "lambda-", "audit-"))
    }
    writes = {"workload-control", "workload-remove", "workload-exec", "workload-realloc", "workload-replace",
              "workload-dissociate", "deployment-cancel", "lambda-cancel", "lambda-run"}  # fmt: skip
    assert readers - writes <= covered, readers - writes - covered


def test_the_pages_leave_the_log_panels_out_for_a_viewer(world: World, ui_client: Login, viewer: Any) -> None:
    client = ui_client(viewer)
    for name, pk in (("workload-detail", world.workload.pk), ("deployment-detail", world.deployment.pk),
                     ("lambda-detail", world.run.pk)):  # fmt: skip
        page = client.get(reverse(f"clusters:{name}", args=[pk])).content.decode()
        assert 'id="log"' not in page
        assert "data-url=" not in page
        assert 'id="no-logs"' in page


def test_the_api_without_a_request_in_its_context_masks(world: World) -> None:
    from clusters.serializers import DeploymentSerializer, WorkloadSerializer

    assert WorkloadSerializer(world.workload).data["env"] == [MASKED, f"MODE={secrets.MASK}"]
    assert SECRET not in json.dumps(DeploymentSerializer(world.deployment).data)


def test_merged_logs_that_reach_a_pod_one_only_views_are_refused(
    world: World, ui_node: Callable[..., Node], deployer: Any
) -> None:
    other = PodFactory(name="other")
    PodMemberFactory(pod=other, user=deployer, role=PodMember.Role.VIEWER)
    WorkloadFactory(node=ui_node("o1", node_pod=other), app="web", container_id="d" * 64)
    api = APIClient()
    api.force_authenticate(deployer)
    refused = api.get("/api/workloads/logs/?app=web")
    assert refused.status_code == 403
    assert "pod other" in refused.json()["detail"]
    assert api.get("/api/workloads/logs/?app=web&pod=eru").status_code == 200


# --- the audit log ------------------------------------------------------------------------------
def _stored() -> str:
    return json.dumps(list(AuditEvent.objects.values_list("action", "before", "after")))


def test_no_audit_row_keeps_an_env_value_and_a_digest_shows_a_change(world: World, deployer: Any) -> None:
    actor = services.Actor(user=deployer, via="api")
    services.workload_replace(actor=actor, pod=world.pod, data={"app": "web", "entrypoint": "main",
                              "env": ["DB_PASSWORD=hunter3", "MODE=prod"]})  # fmt: skip
    again = services.deployment_validate(
        pod=world.pod, data=_request({"env": ["DB_PASSWORD=other", "MODE=prod"]})
    )
    services.deployment_create(actor=actor, spec=again)
    stored = _stored()
    assert "hunter" not in stored
    assert "DB_PASSWORD=other" not in stored
    assert "prod" not in stored
    first, second = (
        e.after["env"]
        for e in AuditEvent.objects.filter(
            action=AuditEvent.Action.DEPLOYMENT_CREATE, after__app="web"
        ).order_by("pk")
    )
    assert first["MODE"] == second["MODE"]  # unchanged
    assert first["DB_PASSWORD"] != second["DB_PASSWORD"]  # changed
    assert first["DB_PASSWORD"].startswith(secrets.DIGEST_PREFIX)


def test_digests_are_keyed_by_the_server_s_key_and_name_their_key() -> None:
    mine = secrets.digest_env(["A=hunter2", "B=hunter2"])
    assert mine["A"] != mine["B"]  # equal values under two keys do not show as equal
    with override_settings(SECRET_KEY="another key, another server"):
        assert secrets.digest_env(["A=hunter2"])["A"] != mine["A"]  # nobody without the key tests a guess
    assert len(mine["A"]) == len(secrets.DIGEST_PREFIX) + 16


def test_masking_keeps_keys_hides_values_and_their_length_at_any_depth() -> None:
    assert secrets.mask_env(["A=1", "B=a much longer value", "C=", "BARE", 5]) == [
        "A=******", "B=******", "C=******", "BARE", "******",
    ]  # fmt: skip
    spec = {"env": ["P=x"], "spec": "appname: x\n", "hook": {"env": ["Q=y"]}, "command": ["env"]}
    assert secrets.mask_spec(spec) == {"env": ["P=******"], "hook": {"env": ["Q=******"]}, "command": ["env"]}
    assert secrets.scrub_audit({"env": ["P=x"], "keys": {"env": ["P", "Q"]}}) == {
        "env": {"P": secrets.digest("P=x")},
        "keys": {"env": ["P", "Q"]},  # exec's row keeps keys only: nothing to digest
    }


def test_an_audit_row_written_before_the_digests_shows_none_in_clear(
    world: World, ui_client: Login, deployer: Any
) -> None:
    AuditEvent.objects.create(
        via="api", action=AuditEvent.Action.DEPLOYMENT_CREATE, target_type="deployment", pod=world.pod,
        pod_name="eru", after={"env": [f"OLD={SECRET}"]},
    )  # fmt: skip
    assert SECRET not in ui_client(deployer).get(reverse("clusters:audit-list")).content.decode()
    api = APIClient()
    api.force_authenticate(deployer)
    assert SECRET not in api.get("/api/audit/").content.decode()


# --- etcd ---------------------------------------------------------------------------------------
def test_the_etcd_mirror_leaves_env_out_unless_told(world: World) -> None:
    w = Workload.objects.select_related("pod", "node").get(pk=world.workload.pk)
    keys = sync.workload_keys(w)
    assert keys
    assert all(value["env"] == [] for value in keys.values())
    with override_settings(ERU_ETCD_WORKLOAD_ENV=True):  # Eru's layout, for Eru tools reading etcd
        assert all(value["env"] == ENV for value in sync.workload_keys(w).values())


# --- a removed pod ------------------------------------------------------------------------------
def test_removing_a_pod_keeps_its_deployments_and_its_audit_rows_findable_by_name(
    admin_user: Any, ui_client: Login
) -> None:
    gone = PodFactory(name="gone")
    admin = services.Actor(user=admin_user, via="api")
    services.member_set(actor=admin, pod=gone, user=UserFactory(username="vera"), role=PodMember.Role.VIEWER)
    d = DeploymentFactory(pod=gone, pod_name="gone", spec={"env": ENV})
    run = LambdaRun.objects.create(deployment=DeploymentFactory(pod=gone, pod_name="gone"), timeout=5)
    services.pod_remove(actor=admin, pod=gone)
    d.refresh_from_db()
    assert (d.pod, d.pod_name) == (None, "gone")
    assert LambdaRun.objects.filter(pk=run.pk).exists()
    found = set(AuditEvent.objects.filter(pod_name="gone").values_list("action", flat=True))
    assert found == {AuditEvent.Action.MEMBER_SET, AuditEvent.Action.POD_REMOVE}
    client = ui_client(admin_user)
    page = client.get(reverse("clusters:audit-list") + "?pod=gone").content.decode()
    assert "pod.remove" in page
    assert "member.set" in page
    assert "(removed)" in page
    api = APIClient()
    api.force_authenticate(admin_user)
    assert {e["action"] for e in api.get("/api/audit/?pod=gone").json()["results"]} == found
    assert api.get(f"/api/deployments/{d.pk}/").json()["pod"] == "gone"
    assert api.get(f"/api/lambdas/{run.pk}/").json()["pod"] == "gone"
    for name, pk in (("deployment-detail", d.pk), ("lambda-detail", run.pk), ("lambda-list", None)):
        response = client.get(reverse(f"clusters:{name}", args=[pk] if pk else []))
        assert response.status_code == 200
        assert "gone" in response.content.decode()
    vera = ui_client(UserFactory(username="vera"))
    assert vera.get(reverse("clusters:deployment-detail", args=[d.pk])).status_code == 404  # staff only


def test_a_deployment_of_a_removed_pod_is_cancelled_by_staff_only(admin_user: Any, deployer: Any) -> None:
    d = DeploymentFactory(pod=None, pod_name="gone")
    with pytest.raises(PermissionDenied):
        services.deployment_cancel(actor=services.Actor(user=deployer, via="api"), deployment=d)
    done = services.deployment_cancel(actor=services.Actor(user=admin_user, via="api"), deployment=d)
    assert done.state == Deployment.State.CANCELLED


# --- erucli -------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_erucli_gets_403_for_a_viewer_s_logs(
    live_server: Any, ui_node: Callable[..., Node], viewer: Any
) -> None:
    w = WorkloadFactory(node=ui_node("n1"), container_id="c" * 64, env=ENV)
    PodMemberFactory(pod=w.pod, user=viewer, role=PodMember.Role.VIEWER)
    _, token = services.token_create(actor=services.SYSTEM, user=viewer, name="cli")
    env = {**os.environ, "ERU": live_server.url, "ERU_TOKEN": token}
    cli = [sys.executable, "-m", "erucli"]
    done = subprocess.run(
        [*cli, "workload", "logs", str(w.pk)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "403" in done.stderr or "secrets" in done.stderr, done.stderr
    shown = subprocess.run(
        [*cli, "workload", "get", str(w.pk)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert SECRET not in shown.stdout + shown.stderr


# --- the data migration -------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_migration_digests_old_audit_rows_and_keeps_deployments_pod_names() -> None:
    from tests.clusters.test_migrations import _migrate, max_leaf

    old = _migrate(("clusters", "0014_teams_quotas_tokens"))
    pod = old.get_model("clusters", "Pod").objects.create(name="eru")
    d = old.get_model("clusters", "Deployment").objects.create(
        pod=pod, app="web", entrypoint="main", image="x", count=1, spec={"env": ENV}
    )
    events = old.get_model("clusters", "AuditEvent").objects
    events.create(
        via="api", action="deployment.create", target_type="deployment", after={"env": ENV, "count": 1}
    )
    events.create(via="api", action="x", target_type="x", before={"old": [{"env": [f"A={SECRET}"]}]})
    events.create(via="api", action="workload.exec", target_type="workload", after={"env": ["DB_PASSWORD"]})
    new = _migrate(("clusters", "0015_secrets_deployment_pod_name"))
    rows = {e.action: (e.before, e.after) for e in new.get_model("clusters", "AuditEvent").objects.all()}
    assert SECRET not in json.dumps(list(rows.values()))
    assert rows["deployment.create"][1] == {"env": secrets.digest_env(ENV), "count": 1}  # as new rows are
    assert rows["x"][0] == {"old": [{"env": {"A": secrets.digest(f"A={SECRET}")}}]}
    assert rows["workload.exec"][1] == {"env": ["DB_PASSWORD"]}  # keys only already
    assert new.get_model("clusters", "Deployment").objects.get(pk=d.pk).pod_name == "eru"
    _migrate(("clusters", max_leaf()))
