"""The spec policy: what a pod's members who are not administrators may ask of a container.
Administrators (and the system) may ask anything; everyone else gets what the pod's policy grants
(clusters.models.PodPolicy), and a refusal names the rule and who can grant it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

import schema
from clusters import permissions
from clusters.errors import invalid
from clusters.models import AuditEvent, Pod, PodPolicy
from clusters.services._common import Actor, audit
from clusters.users import AnyUser
from schema.container import SYSCTL_RE, VOLUME_NAME_RE, check_cap_add, clean_path

# Namespaced sysctls that cannot reach past the container (Kubernetes' safe set, and Eru's example).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.core.somaxconn", "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ping_group_range", "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_syncookies",
    }
)  # fmt: skip
SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
_GRANT = "an administrator can grant it in the pod's spec policy"


def policy_of(pod: Pod) -> PodPolicy:
    """The pod's policy (the default, nothing granted, when none was set)."""
    return PodPolicy.objects.filter(pod=pod).first() or PodPolicy(pod=pod)


def _under(path: str, prefixes: list[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def refusals(policy: PodPolicy, r: schema.DeployRequest) -> dict[str, list[str]]:
    """What of the request the policy does not grant, by field, each naming its rule."""
    errors: dict[str, list[str]] = {}

    def refuse(field: str, text: str) -> None:
        errors.setdefault(field, []).append(f"{field}: {text}; {_GRANT}")

    if r.privileged and not policy.privileged:
        refuse("privileged", "a privileged container needs the pod policy's 'privileged'")
    if (r.network == "host" or r.network.startswith("container:")) and not policy.host_network:
        refuse("network", f"network {r.network!r} needs the pod policy's 'host_network'")
    for volume in r.volumes:
        source = volume.split(":")[0]
        if not source.startswith("/"):  # a volume of that name may be anything on the node (a bind of /)
            if source not in policy.host_paths:
                refuse("volumes", f"named volume {source} is not in the pod policy's 'host_paths'")
            continue
        if (source in SOCKETS or _under(SOCKETS[0], [source]) or _under(SOCKETS[1], [source])) and not (
            policy.docker_socket
        ):
            refuse(
                "volumes", f"{source} reaches the Docker socket: it needs the pod policy's 'docker_socket'"
            )
        elif not _under(source, list(policy.host_paths)):
            allowed = ", ".join(policy.host_paths) or "none"
            refuse("volumes", f"host path {source} is outside the pod policy's 'host_paths' ({allowed})")
    for name in r.sysctls:
        if name not in SAFE_SYSCTLS and name not in policy.sysctls:
            refuse("sysctls", f"{name} is not a safe sysctl and not in the pod policy's 'sysctls'")
    for cap in r.cap_add:
        if cap not in policy.cap_add:
            refuse("cap_add", f"capability {cap} is not in the pod policy's 'cap_add'")
    return errors


def require_spec_allowed(user: AnyUser | None, pod: Pod, r: schema.DeployRequest) -> None:
    """Raise ValidationError (by field) for what the pod's policy does not grant this user."""
    if user is None or permissions.can_admin(user):
        return
    errors = refusals(policy_of(pod), r)
    if errors:
        raise ValidationError(errors)


POLICY_FIELDS = ("privileged", "host_network", "docker_socket", "host_paths", "sysctls", "cap_add")


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise invalid(
            sorted(unknown)[0], f"{sorted(unknown)[0]}: unknown field (policy: {', '.join(POLICY_FIELDS)})"
        )
    for flag in ("privileged", "host_network", "docker_socket"):
        if flag in fields and not isinstance(fields[flag], bool):
            raise invalid(flag, f"{flag}: true or false")
    for key in ("host_paths", "sysctls", "cap_add"):
        if key in fields and not (
            isinstance(fields[key], list) and all(isinstance(v, str) for v in fields[key])
        ):
            raise invalid(key, f"{key}: a list of strings")
    paths = []
    for path in fields.get("host_paths", []):
        named = bool(VOLUME_NAME_RE.match(path))
        if not (path.startswith("/") or named) or ".." in path.split("/") or len(path) > 1024:
            raise invalid("host_paths", f"host_paths: {path[:60]!r} is not an absolute path or a volume name")
        paths.append(path if named else clean_path(path))
    if "host_paths" in fields:
        fields["host_paths"] = paths
    for name in fields.get("sysctls", []):
        if not SYSCTL_RE.match(name):
            raise invalid("sysctls", f"sysctls: {name[:60]!r} is not a sysctl name")
    if "cap_add" in fields:
        try:
            fields["cap_add"] = check_cap_add(fields["cap_add"])
        except ValueError as exc:
            raise invalid("cap_add", str(exc)) from None
    return fields


def pod_policy_set(*, actor: Actor, pod: Pod, fields: Mapping[str, Any]) -> PodPolicy:
    """Administrators: change the fields given of the pod's policy (the others stay); audited."""
    permissions.require_admin(actor.user)
    fields = _checked(dict(fields))
    with transaction.atomic():
        policy = PodPolicy.objects.select_for_update().filter(pod=pod).first() or PodPolicy(pod=pod)
        before = {f: getattr(policy, f) for f in POLICY_FIELDS}
        for name, value in fields.items():
            setattr(policy, name, value)
        policy.save()
        after = {f: getattr(policy, f) for f in POLICY_FIELDS}
        audit(actor, AuditEvent.Action.POD_POLICY, pod, pod=pod, before=before, after=after)
    return policy
