"""Runs in a spawned process (no Django imported at module level): one deploy on a team's quota,
pinned to one node, into the test DB (as tests/clusters/race_child.py). The deploy waits `hold`
seconds after its quota check, inside its transaction: the window in which a second deploy, on
another node (so not behind the same node lock), would count the same use — unless the quota row's
lock keeps it waiting until this one commits."""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urlsplit


def deploy_for_team(db_name: str, prefix: str, image: str, node: str, hold: float, barrier: Any) -> str:
    url = os.environ.get("ERU_DATABASE", "")
    if url.startswith("postgres"):
        os.environ["ERU_DATABASE"] = urlsplit(url)._replace(path="/" + db_name).geturl()
    else:
        os.environ["ERU_DB"] = db_name
    os.environ["ERU_ETCD_PREFIX"] = prefix
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.exceptions import ValidationError

    from clusters import services
    from clusters.models import Pod
    from clusters.services import deploy

    checked = deploy.require_quota

    def check_then_hold(**kwargs: Any) -> None:
        checked(**kwargs)
        time.sleep(hold)

    deploy.require_quota = check_then_hold

    pod = Pod.objects.get(name="eru")
    actor = services.Actor(user=User.objects.get(username="dora"), via="api")
    data = {
        "app": "race",
        "entrypoint": "q",
        "image": image,
        "command": ["sleep", "600"],
        "cpu_request": 0.1,
        "cpu_limit": 0.1,
        "cpu_bind": False,
        "memory_limit": "16M",
        "node_names": [node],  # half on each node: only the quota row's lock orders them
    }
    spec = services.deployment_validate(pod=pod, data=data)
    barrier.wait(timeout=30)
    try:
        services.deployment_create(actor=actor, spec=spec)
    except ValidationError as exc:
        return "refused: " + "; ".join(exc.messages)
    return "granted"
