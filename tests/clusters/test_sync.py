"""The etcd mirror: keys follow the DB after commit, and the drift command finds and repairs
missing, changed and extra keys."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clusters import etcd, sync

pytestmark = pytest.mark.services


def test_mirror_has_no_drift_after_registration(nodes: list[Any]) -> None:
    assert sync.check().count == 0
    pod = json.loads(etcd.get_prefix(etcd.pod_key("eru"))[etcd.pod_key("eru")])
    assert pod == {"name": "eru", "desc": "test pod"}


def test_drift_is_reported_and_repaired(nodes: list[Any]) -> None:
    client = etcd.client()
    client.delete(etcd.node_key("node1"))
    client.put(etcd.resource_key("node2"), '{"capacity": {}}')
    client.put(etcd.key("/workloads/deadbeef"), "{}")
    drift = sync.check()
    assert list(drift.missing) == [etcd.node_key("node1")]
    assert list(drift.changed) == [etcd.resource_key("node2")]
    assert drift.extra == [etcd.key("/workloads/deadbeef")]
    out = StringIO()
    with pytest.raises(CommandError) as found:
        call_command("etcd_sync", stdout=out)
    assert found.value.returncode == 1  # drift found: cron and monitoring see it
    assert "1 missing, 1 changed, 1 extra" in out.getvalue()
    assert sync.check().count == 3  # checking alone changes nothing
    out = StringIO()
    call_command("etcd_sync", "--repair", stdout=out)  # repaired: exits 0
    assert "drift repaired" in out.getvalue()
    assert sync.check().count == 0
    call_command("etcd_sync", stdout=StringIO())  # no drift: exits 0


def test_liveness_keys_are_not_drift(nodes: list[Any]) -> None:
    assert etcd.alive_nodes() == {"node1", "node2"}
    sync.repair()
    assert etcd.alive_nodes() == {"node1", "node2"}


def test_diff_is_pure_and_ignores_json_formatting() -> None:
    drift = sync.diff({"a": '{"x": 1, "y": 2}', "b": "1"}, {"a": '{"y":2,"x":1}', "c": "3"})
    assert drift.missing == {"b": "1"}
    assert drift.changed == {}
    assert drift.extra == ["c"]
