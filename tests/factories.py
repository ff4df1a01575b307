"""factory_boy factories for rows the tests need as plain rows (no Docker, no etcd): users, pods,
nodes, deployments and workloads, with the smallest values that make a valid row."""

from __future__ import annotations

import factory
from django.contrib.auth.models import User
from factory.django import DjangoModelFactory

from clusters.models import Deployment, Node, Pod, PodMember, Workload

GIB = 1 << 30
IMAGE = "eru/busybox:latest"


class UserFactory(DjangoModelFactory[User]):
    """A user; `password=` is hashed (factory.django.Password), so the user can log in with it."""

    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-user-1")


class PodFactory(DjangoModelFactory[Pod]):
    class Meta:
        model = Pod
        django_get_or_create = ("name",)

    name = "eru"
    desc = "test pod"


class PodMemberFactory(DjangoModelFactory[PodMember]):
    class Meta:
        model = PodMember

    pod = factory.SubFactory(PodFactory)
    user = factory.SubFactory(UserFactory)
    role = PodMember.Role.VIEWER


class NodeFactory(DjangoModelFactory[Node]):
    """A node row: 2 cores of 100 pieces and 4 GiB, unused, unless told otherwise."""

    class Meta:
        model = Node

    name = factory.Sequence(lambda n: f"n{n}")
    pod = factory.SubFactory(PodFactory)
    endpoint = factory.LazyAttribute(lambda node: f"tcp://127.0.0.1:2376#{node.name}")
    cpu_map = factory.LazyFunction(lambda: {"0": 100, "1": 100})
    memory = 4 * GIB


class DeploymentFactory(DjangoModelFactory[Deployment]):
    class Meta:
        model = Deployment

    pod = factory.SubFactory(PodFactory)
    app = "web"
    entrypoint = "main"
    image = IMAGE
    count = 1


class WorkloadFactory(DjangoModelFactory[Workload]):
    """A running workload row on a node (of the node's pod), named as Eru names them."""

    class Meta:
        model = Workload

    node = factory.SubFactory(NodeFactory)
    pod = factory.LazyAttribute(lambda w: w.node.pod)
    app = "web"
    entrypoint = "main"
    name = factory.LazyAttributeSequence(lambda w, n: f"{w.app}_{w.entrypoint}_{n:06d}")
    image = IMAGE
    state = Workload.State.RUNNING
