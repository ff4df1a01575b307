"""End to end in a real browser: the portal's htmx parts (the plan preview swapped in place, the
deployment's progress polling until done, HX-Location navigations) against live_server, the real
Celery worker thread and the real dockerd nodes."""

from __future__ import annotations

import re
from typing import Any

import docker as docker_sdk
import pytest
from playwright.sync_api import Page, Request, expect

from clusters.models import Deployment, Workload
from tests.conftest import IMAGE

pytestmark = pytest.mark.services

# busybox `sleep` as PID 1 ignores SIGTERM (stop would take Docker's 10 s); this shell exits on it.
COMMAND = "sh -c \"trap 'exit 0' TERM; sleep 600 & wait\""
DEPLOYMENT_URL = re.compile(r"/deployments/(\d+)/$")
WORKLOAD_URL = re.compile(r"/workloads/(\d+)/$")
DONE_TIMEOUT_MS = 20_000


def log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login/")
    page.locator("#id_username").fill("admin")
    page.locator("#id_password").fill("pw-admin-1")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/")


def running_eru_containers(clients: dict[str, docker_sdk.DockerClient]) -> dict[str, list[str]]:
    """Container ids by node, of the running ERU containers (looked at behind the app's back)."""
    return {
        name: [c.id for c in client.containers.list(filters={"label": "ERU=1"})]
        for name, client in clients.items()
    }


def test_deploy_watch_progress_and_stop_a_workload(
    page: Page, live_server: Any, admin_user: Any, nodes: list[Any], worker: Any, docker_clean: Any
) -> None:
    base = live_server.url
    log_in(page, base)

    # The pods list, then the pod: both nodes up, each with its three capacity bars.
    page.locator("#pod-rows").get_by_role("link", name="eru").click()
    expect(page).to_have_url(f"{base}/pods/eru/")
    for node in nodes:
        row = page.locator(f"#node-{node.name}")
        expect(row.locator(".badge")).to_have_text("up")
        expect(row.get_by_role("meter")).to_have_count(3)

    page.get_by_role("link", name="Deploy").click()
    deploy_url = f"{base}/pods/eru/deploy/"
    expect(page).to_have_url(deploy_url)
    page.locator("#id_app").fill("e2e")
    page.locator("#id_entrypoint").fill("web")
    page.locator("#id_image").fill(IMAGE)
    page.locator("#id_command").fill(COMMAND)
    page.locator("#id_count").fill("2")
    page.locator("#id_cpu_limit").fill("0.1")
    page.locator("#id_memory_limit").fill("16M")
    page.locator("#id_cpu_bind").select_option("unbind")

    # The preview is swapped into the form in place: same URL, same document (the marker survives).
    page.evaluate("window.__e2e_same_document = true")
    page.get_by_role("button", name="Preview plan").click()
    plan = page.locator("#deploy-form #plan")
    expect(plan).to_be_visible()
    expect(plan.locator("tfoot th")).to_have_text(["Total", "2"])
    assert page.url == deploy_url
    assert page.evaluate("window.__e2e_same_document") is True
    expect(page.locator("#id_command")).to_have_value(COMMAND)  # the swapped form kept the input
    assert not Deployment.objects.exists()

    # Deploy: HX-Location brings the deployment page; its progress section polls until final.
    polls: list[Request] = []
    page.on("request", lambda r: polls.append(r) if r.headers.get("hx-target") == "progress" else None)
    with page.expect_response(lambda r: bool(DEPLOYMENT_URL.search(r.url))) as first:
        page.locator("#deploy-form").get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(DEPLOYMENT_URL)
    started_running = "deployment-running" in first.value.text()
    progress = page.locator("#progress")
    expect(progress.locator("p .badge")).to_have_text("done", timeout=DONE_TIMEOUT_MS)
    expect(progress.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "2")
    expect(progress.locator(".progress .ok")).to_have_attribute("style", "width: 100%")
    expect(progress).to_contain_text("2 running, 0 failed of 2 (100%)")
    expect(progress.locator("tbody .badge")).to_have_text(["running", "running"])
    if started_running:  # the page showed "running" first: the polls are what brought "done"
        assert polls, "the progress section never polled"
        last = polls[-1].response()
        assert last is not None
        assert last.status == 286  # htmx's "stop polling"
    expect(progress).not_to_have_attribute("hx-get", re.compile(".*"))  # polling stopped
    assert page.evaluate("window.__e2e_same_document") is True  # all of it without a page load

    containers = running_eru_containers(docker_clean)
    assert sum(len(ids) for ids in containers.values()) == 2, containers
    deployment = Deployment.objects.get()
    assert {node: len(ids) for node, ids in containers.items() if ids} == deployment.plan

    # A workload's page: running, with its container's id.
    progress.locator("tbody a").first.click()
    expect(page).to_have_url(WORKLOAD_URL)
    state = page.locator("#workload-state")
    expect(state.locator(".badge[class*='state-']")).to_have_text("running")
    container = state.locator("code[title]")
    container_id = container.get_attribute("title") or ""
    assert container_id in {cid for ids in containers.values() for cid in ids}
    expect(container).to_have_text(container_id[:12])

    # Stop: HX-Location brings the page back with the request acknowledged; the worker stops it.
    workload = Workload.objects.select_related("node").get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    state.get_by_role("button", name="Stop").click()
    expect(page.locator(".messages")).to_contain_text(f"Stop of {workload.name} requested.")
    expect(page).to_have_url(f"{base}/workloads/{workload.pk}/")
    # The page polls while the stop is pending and shows the new state without a reload.
    expect(page.locator("#workload-state .badge[class*='state-']").first).to_have_text("stopped")
    assert Workload.objects.get(pk=workload.pk).state == Workload.State.STOPPED
    assert docker_clean[workload.node.name].containers.get(container_id).status == "exited"
    expect(page.locator("#workload-state code[title]")).to_have_attribute("title", container_id)


def test_bad_deploy_shows_both_errors_next_to_their_fields(
    page: Page, live_server: Any, admin_user: Any, pod: Any
) -> None:
    base = live_server.url
    log_in(page, base)
    deploy_url = f"{base}/pods/eru/deploy/"
    page.goto(deploy_url)
    page.locator("#id_app").fill("e2e")
    page.locator("#id_entrypoint").fill("a_b")
    page.locator("#id_memory_limit").fill("1M")
    page.evaluate("window.__e2e_same_document = true")
    page.locator("#deploy-form").get_by_role("button", name="Deploy").click()

    for field, message in (
        ("entrypoint", "entrypoint name has '_' character"),
        ("memory_limit", "is below the minimum of 6 MiB"),
    ):
        group = page.locator(".field", has=page.locator(f"#id_{field}"))
        expect(group.locator(".errorlist")).to_contain_text(message)
    expect(page.locator("#deploy-form .errorlist")).to_have_count(2)  # no other field complains
    expect(page.locator("#id_entrypoint")).to_have_value("a_b")
    assert page.url == deploy_url
    assert page.evaluate("window.__e2e_same_document") is True  # the errors were swapped in by htmx
    assert not Deployment.objects.exists()
    assert not Workload.objects.exists()


def test_the_workload_page_follows_its_log_live(
    page: Page, live_server: Any, admin_user: Any, deploy: Any
) -> None:
    w = deploy(
        "sh",
        "-c",
        "echo hello; echo oops >&2; sleep 2; while true; do echo tick-$(date +%s%N); sleep 0.5; done",
    )
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/workloads/{w.pk}/")
    log = page.locator("#log pre")
    expect(log.locator(".log-stdout").first).to_have_text("hello\n")
    expect(log.locator(".log-stderr")).to_have_text(["oops\n"])
    expect(page.locator("[data-log-state]")).to_have_text("following")
    expect(log.locator("text=tick-").first).to_be_visible()  # a line printed after the page opened
    ticks = log.locator(".log-line", has_text="tick-").count()
    expect(log.locator(".log-line", has_text="tick-")).not_to_have_count(ticks)  # and more keep coming
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("[data-log-state]")).to_have_text("paused")
    paused = log.locator(".log-line").count()
    page.wait_for_timeout(1200)
    assert log.locator(".log-line").count() == paused


def test_the_deployment_page_merges_its_workloads_logs_live(
    page: Page, live_server: Any, admin_user: Any, deploy: Any
) -> None:
    ws = deploy(
        "sh", "-c", 'echo "up $HOSTNAME"; while true; do echo "tick $HOSTNAME"; sleep 0.4; done', count=2
    )
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/deployments/{ws[0].deployment_id}/")
    log = page.locator("#log pre")
    for w in ws:  # each line after its workload's name, both containers', new lines as they come
        expect(log.locator(".log-line", has_text=f"{w.name} | up ")).to_have_count(1)
        expect(log.locator(".log-line", has_text=f"{w.name} | tick ").first).to_be_visible()
    expect(page.locator("#log [data-log-state]")).to_have_text("following")
    expect(page.locator("#down")).not_to_contain_text("Did not come up")


def test_a_pasted_spec_deploys_and_its_errors_show_with_their_place(
    page: Page, live_server: Any, admin_user: Any, nodes: Any, worker: Any, docker_clean: Any
) -> None:
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/pods/eru/deploy/")
    page.locator("#id_entrypoint").fill("main")
    page.locator("#id_cpu_limit").fill("0.2")
    page.locator("#id_memory_limit").fill("32M")
    page.get_by_text("Paste a spec (optional)").click()
    spec = "appname: pasted\nentrypoints:\n  main:\n    cmd: sleep 600\n    restart: sometimes\n"
    spec += "labels: {team: infra}\n"
    page.locator("#id_spec").fill(spec)
    page.locator("#deploy-form").get_by_role("button", name="Deploy").click()
    group = page.locator(".field", has=page.locator("#id_spec"))
    expect(group.locator(".errorlist")).to_contain_text("spec.entrypoints.main.restart: restart: no, always")
    assert not Deployment.objects.exists()
    page.locator("#id_spec").fill(spec.replace("sometimes", "always"))
    page.locator("#deploy-form").get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(DEPLOYMENT_URL, timeout=DONE_TIMEOUT_MS)
    expect(page.locator("#progress p .badge")).to_have_text("done", timeout=DONE_TIMEOUT_MS)
    w = Workload.objects.get(app="pasted")
    assert (w.entrypoint, w.command, w.labels, w.options) == ("main", ["sleep", "600"], {"team": "infra"},
                                                             {"restart": "always"})  # fmt: skip
    container = docker_clean["node1"].containers.get(w.container_id)
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"


def test_a_lambda_run_from_the_pod_page_shows_its_output_live_and_its_exit_code(
    page: Page, live_server: Any, admin_user: Any, nodes: Any, worker: Any, docker_clean: Any
) -> None:
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/pods/eru/")
    page.get_by_role("link", name="Run a lambda").click()
    page.locator("#id_command").fill("sh -c 'echo first; sleep 1; echo second >&2; exit 5'")
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(re.compile(r"/lambdas/\d+/$"))
    log = page.locator("#log pre")
    expect(log.locator(".log-stdout", has_text="#0 | first")).to_have_count(1)
    expect(log.locator(".log-stderr", has_text="#0 | second")).to_have_count(1)
    expect(page.locator("[data-log-state]")).to_have_text(
        "it ended (reload for its exit code)", timeout=15_000
    )
    page.reload()
    expect(page.locator("[data-run-state]")).to_have_text("done")
    expect(page.locator("dd", has=page.locator("[data-run-state]"))).to_contain_text("exit code 5")
    page.goto(f"{live_server.url}/lambdas/")
    expect(page.locator("table.list tbody tr").first).to_contain_text("echo first")
