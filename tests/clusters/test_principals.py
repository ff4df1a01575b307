"""Who may call the gRPC door (clusters.principals): nodes by their secret, users by password or
token, usernames case-insensitively, each verified credential cached."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from clusters import principals, services
from clusters.models import Node
from tests.factories import NodeFactory


@pytest.fixture(autouse=True)
def _fresh() -> None:
    principals.forget()


def test_a_node_by_its_secret_and_a_user_by_password_or_token(
    admin_user: Any, django_assert_num_queries: Any
) -> None:
    node = NodeFactory(name="Node1")
    secret = services.node_secret_rotate(actor=services.SYSTEM, node=node)
    found = principals.authenticate([("user-agent", "grpc-go"), ("node.node1", secret)])
    assert found == principals.Principal("node.node1", node_id=node.pk)
    assert principals.authenticate([("node.node1", "erunode_wrong")]) is None
    assert principals.authenticate([("node.node2", secret)]) is None
    assert principals.authenticate([("admin", "pw-admin-1")]).user == admin_user  # type: ignore[union-attr]
    _, token = services.token_create(actor=services.SYSTEM, user=admin_user, name="t")
    assert principals.authenticate([("ADMIN", token)]).user == admin_user  # type: ignore[union-attr]
    assert principals.authenticate([("token", token)]).user == admin_user  # type: ignore[union-attr]
    with django_assert_num_queries(0):  # verified once: the next calls cost no query and no hash
        assert principals.authenticate([("node.node1", secret)]) is not None
        assert principals.authenticate([("admin", "pw-admin-1")]) is not None
    assert Node.objects.get(pk=node.pk).secret_digest != secret  # only its digest is kept


@pytest.mark.parametrize("name", ["a@b.com", "token", "node.x", "grpc-x", "with space"])
def test_new_usernames_must_be_able_to_be_grpc_keys(name: str) -> None:
    with pytest.raises(ValidationError):
        principals.validate_username(name)


def test_a_good_username_passes(db: Any) -> None:
    principals.validate_username("dora.smith_2-b")
