"""Runs in a spawned process (no Django imported at module level): one deploy into the test DB."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit


def deploy_once(db_name: str, prefix: str, image: str, barrier: Any) -> str:
    # The parent's environment is inherited: point its database (SQLite file or PostgreSQL URL)
    # at the test database pytest-django made.
    url = os.environ.get("ERU_DATABASE", "")
    if url.startswith("postgres"):
        os.environ["ERU_DATABASE"] = urlsplit(url)._replace(path="/" + db_name).geturl()
    else:
        os.environ["ERU_DB"] = db_name
    os.environ["ERU_ETCD_PREFIX"] = prefix
    import django

    django.setup()
    from django.core.exceptions import ValidationError

    from clusters import services
    from clusters.models import Pod

    pod = Pod.objects.get(name="eru")
    data = {
        "app": "race",
        "entrypoint": "e",
        "image": image,
        "count": 1,
        "command": ["sleep", "600"],
        "cpu_request": 1,
        "cpu_bind": True,
        "memory_limit": "16M",
    }
    spec = services.deployment_validate(pod=pod, data=data)
    barrier.wait(timeout=30)
    try:
        services.deployment_create(actor=services.SYSTEM, spec=spec)
    except ValidationError as exc:
        return "refused: " + "; ".join(exc.messages)
    return "granted"
