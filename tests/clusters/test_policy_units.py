"""The spec policy's rules, without Docker: what a member who is not an administrator is refused, by
the rule's name, however the request spells it — and through the spec file and the lambda path."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

import schema
from clusters import services
from clusters.models import PodPolicy
from clusters.services.policy import refusals, require_spec_allowed
from tests.factories import PodFactory, PodMemberFactory, UserFactory

BASE = {"pod": "eru", "app": "a", "entrypoint": "e", "image": "eru/busybox:latest"}


def _refused(policy: PodPolicy, **fields: Any) -> dict[str, list[str]]:
    return refusals(policy, schema.DeployRequest.parse({**BASE, **fields}))


@pytest.mark.parametrize(
    "volume",
    ["/var/run/docker.sock:/s", "/var/./run/docker.sock:/s", "/var//run/docker.sock:/s",
     "//var/run/docker.sock:/s", "/var/run/:/s", "/var/./run:/s", "/:/host:ro", "/run/docker.sock/:/s"],
)  # fmt: skip
def test_the_docker_socket_however_spelled_needs_its_own_grant(volume: str) -> None:
    granted_paths = PodPolicy(host_paths=["/"])  # every host path, but not the socket
    assert "docker_socket" in _refused(granted_paths, volumes=[volume])["volumes"][0]
    assert not _refused(PodPolicy(host_paths=["/"], docker_socket=True), volumes=[volume])


def test_host_paths_are_prefixes_of_normalised_paths_and_named_volumes_need_a_grant() -> None:
    policy = PodPolicy(host_paths=["/srv/data", "cache"])
    assert not _refused(
        policy, volumes=["/srv/data:/d", "/srv/data/x/:/x:ro", "/srv//data/./y:/y", "cache:/c"]
    )
    assert _refused(policy, volumes=["/srv/database:/d"])["volumes"][0].startswith(
        "volumes: host path /srv/database is outside the pod policy's 'host_paths'"
    )
    assert "named volume other" in _refused(policy, volumes=["other:/o"])["volumes"][0]
    assert schema.DeployRequest.parse({**BASE, "volumes": ["/srv//data/./y/:/y//z"]}).volumes == [
        "/srv/data/y:/y/z"
    ]


def test_networks_sysctls_and_capabilities() -> None:
    nothing = PodPolicy()
    for network in ("host", "container:db"):
        assert "'host_network'" in _refused(nothing, network=network)["network"][0]
    assert not _refused(PodPolicy(host_network=True), network="container:db")
    assert not _refused(nothing, sysctls={"net.core.somaxconn": "1024", "net.ipv4.tcp_syncookies": "1"})
    assert "not a safe sysctl" in _refused(nothing, sysctls={"kernel.msgmax": "1"})["sysctls"][0]
    assert not _refused(PodPolicy(sysctls=["kernel.msgmax"]), sysctls={"kernel.msgmax": "1"})
    assert "capability NET_ADMIN" in _refused(nothing, cap_add=["cap_net_admin"])["cap_add"][0]
    assert "'privileged'" in _refused(nothing, privileged=True)["privileged"][0]


@pytest.mark.django_db
def test_the_spec_file_and_the_lambda_path_meet_the_same_policy() -> None:
    pod = PodFactory(name="eru")
    member = UserFactory()
    PodMemberFactory(pod=pod, user=member, role="deployer")
    spec = {
        "appname": "a",
        "entrypoints": {"e": {"cmd": "sleep 1", "privileged": True}},
        "volumes": ["/etc:/e"],
    }
    request = services.deployment_validate(
        pod=pod, data={"entrypoint": "e", "image": BASE["image"], "spec": spec}
    )
    with pytest.raises(ValidationError) as err:
        require_spec_allowed(member, pod, request.request)
    assert set(err.value.message_dict) == {"privileged", "volumes"}
    actor = services.Actor(user=member, via="api")
    with pytest.raises(ValidationError) as err:
        services.lambda_create(actor=actor, spec=request, timeout=60)
    assert "privileged" in err.value.message_dict
    require_spec_allowed(UserFactory(is_staff=True), pod, request.request)  # an administrator may
    with pytest.raises(ValidationError):
        services.pod_policy_set(actor=services.SYSTEM, pod=pod, fields={"host_paths": ["relative/../x"]})
    policy = services.pod_policy_set(
        actor=services.SYSTEM, pod=pod, fields={"host_paths": ["/etc/", "cache"]}
    )
    assert policy.host_paths == ["/etc", "cache"]
