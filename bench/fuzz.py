"""The API contract, fuzzed against a live server: schemathesis reads /api/schema/ from the running
portal and sends a bounded number of cases (default 600) to every operation — creates, changes and
removals included — with a deployer's token, against real data (pod `eru` with a node, a running
deployment). It fails (exit 1) on any 5xx, any status code or content type the schema does not
document, and any body that does not match its documented schema; it prints the failures and the
count of answers by class.

Usage: .venv/bin/python bench/fuzz.py [--cases 600] [--seed N]
       .venv/bin/python bench/fuzz.py --url http://127.0.0.1:8000 --token eru_… [--cases N]
Without --url it starts its own services under var/fuzz (one dockerd node, etcd, Redis; port base
26900, no PostgreSQL), a gunicorn web server and a Celery worker, and stops them at the end (< 3 min).
The fast tier's smaller run (reads and dry runs, in process): tests/schema/test_api_fuzz_schema.py."""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy  # noqa: E402 — bench/deploy.py: the services' environment, shell calls
from deploy import ROOT, sh  # noqa: E402

DIR = ROOT / "var" / "fuzz"
PORT = 26980
PASSWORD = "fuzz-password"
IMAGE = "eru/busybox:latest"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
STREAMS = ("/logs/", "/output/")  # open-ended NDJSON streams (follow): not a case's to wait for
SPARED = {("DELETE", "/api/auth/tokens/{id}/")}  # the run's own token would go, and every case after it 401
SETUP = """
from clusters import services
from clusters.models import Pod
from django.contrib.auth.models import User
admin = User.objects.get(username="admin")
who = services.Actor(user=admin, via="cli")
dora = User.objects.filter(username="dora").first() or services.user_add(actor=who, username="dora")
services.member_set(actor=who, pod=Pod.objects.get(name="eru"), user=dora, role="deployer")
print(services.token_create(actor=services.SYSTEM, user=dora, name="fuzz")[1])
"""


def load_env() -> dict[str, str]:
    return deploy.load_env(DIR, "fuzz.sqlite3", PASSWORD, heartbeat="")


def start(env: dict[str, str]) -> tuple[list[subprocess.Popen[bytes]], str]:
    """Migrate, bootstrap, start the web server and a worker; dora's (a deployer's) token."""
    py = str(ROOT / ".venv" / "bin" / "python")
    (DIR / "fuzz.sqlite3").unlink(missing_ok=True)
    sh(f"{py} manage.py migrate --noinput", env)
    sh(f"{py} manage.py eru_bootstrap", env)
    token = sh(f"{py} manage.py shell", env, stdin=SETUP).strip().splitlines()[-1]
    logs = open(DIR / "fuzz-procs.log", "ab")  # noqa: SIM115 — kept open for the children
    bin_dir = ROOT / ".venv" / "bin"
    commands = [
        f"{bin_dir}/gunicorn eru_site.wsgi --bind 127.0.0.1:{PORT} --workers 2 --timeout 60",
        f"{bin_dir}/celery -A eru_site worker --pool=threads -Q celery,heartbeat,lambda -c 4 "
        "--without-gossip --without-mingle --without-heartbeat -l warning",
    ]
    procs = [subprocess.Popen(shlex.split(c), cwd=ROOT, env=env, stdout=logs, stderr=logs) for c in commands]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{PORT}/api/", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.2)
    return procs, token


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    sh(f"bin/services down --dir {DIR.relative_to(ROOT)}")


def seed(url: str, token: str) -> None:
    """Real data to aim at: a deployment of two workloads (waited for, up to 30 s)."""
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"Token {token}"
    body = {"pod": "eru", "app": "fuzz", "entrypoint": "main", "image": IMAGE, "count": 2}
    body.update(command=["sleep", "3600"], cpu_limit=0.1, memory_limit="32M", cpu_bind=False)
    d = session.post(f"{url}/api/deployments/", json=body, timeout=30)
    d.raise_for_status()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if session.get(f"{url}/api/deployments/{d.json()['id']}/", timeout=10).json()["state"] != "running":
            break
        time.sleep(0.5)


def fuzz(url: str, token: str, cases: int, seed_value: int | None) -> int:
    api = schemathesis.openapi.from_url(f"{url}/api/schema/?format=json")
    operations = [
        op
        for result in api.get_all_operations()
        if (op := result.ok())
        and not op.path.endswith(STREAMS)
        and (op.method.upper(), op.path) not in SPARED
    ]
    headers = {"Authorization": f"Token {token}"}
    seen: Counter[str] = Counter()
    failures: list[str] = []

    @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data: st.DataObject) -> None:
        op = data.draw(st.sampled_from(operations), label="operation")
        mode = data.draw(st.sampled_from(list(GenerationMode)), label="mode")
        case = data.draw(op.as_strategy(generation_mode=mode), label="case")
        try:
            response = case.call_and_validate(base_url=url, headers=headers, checks=CHECKS, timeout=20)
            seen[str(response.status_code)] += 1
        except Exception as exc:  # noqa: BLE001 — every failure is reported, the run goes on
            seen["failed"] += 1
            failures.append(f"{op.method.upper()} {op.path}: {exc}")

    if seed_value is not None:
        run = fixed_seed(seed_value)(run)
    started = time.monotonic()
    run()
    print(
        f"{sum(seen.values())} cases over {len(operations)} operations in {time.monotonic() - started:.0f} s"
    )
    print("answers: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))
    for failure in dict.fromkeys(failures):  # distinct, in order
        print("FAIL", failure[:2000], sep="\n", end="\n\n")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=600)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--url", help="a running portal (then --token: a deployer's)")
    parser.add_argument("--token")
    args = parser.parse_args()
    if args.url:
        if not args.token:
            parser.error("--url needs --token")
        sys.exit(fuzz(args.url.rstrip("/"), args.token, args.cases, args.seed))
    sh(f"bin/services up --dir {DIR.relative_to(ROOT)} --nodes 1 --port-base 26900 --no-postgres")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs, token = start(load_env())
        url = f"http://127.0.0.1:{PORT}"
        seed(url, token)
        code = fuzz(url, token, args.cases, args.seed)
    finally:
        stop(procs)
    sys.exit(code)


if __name__ == "__main__":
    main()
