"""manage.py eru_beat's Launcher with the election stubbed (no etcd): beat runs only while the lease is
held, stops at once when it is lost or etcd fails, and is resigned at the end. The child is a sleeper
standing in for celery beat."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agents.management.commands import eru_beat
from clusters import etcd


class FakeElection:
    def __init__(self) -> None:
        self.win = True
        self.keep = True
        self.fail = False
        self.resigned: list[int] = []

    def campaign(self, path: str, ident: str, ttl: int) -> int | None:
        if self.fail:
            raise etcd.EtcdError("etcd away")
        return 7 if self.win else None

    def refresh_lease(self, lease_id: int) -> bool:
        if self.fail:
            raise etcd.EtcdError("etcd away")
        return self.keep

    def resign(self, path: str, lease_id: int) -> None:
        self.resigned.append(lease_id)


@pytest.fixture
def election(monkeypatch: pytest.MonkeyPatch) -> FakeElection:
    fake = FakeElection()
    monkeypatch.setattr(etcd, "campaign", fake.campaign)
    monkeypatch.setattr(etcd, "refresh_lease", fake.refresh_lease)
    monkeypatch.setattr(etcd, "resign", fake.resign)
    return fake


@pytest.fixture
def launcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[eru_beat.Launcher]:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    monkeypatch.setattr(eru_beat.Launcher, "argv", lambda self: sleeper)
    chosen = eru_beat.Launcher(schedule="unused", ttl=3, ident="t")
    thread = threading.Thread(target=chosen.run, daemon=True)
    thread.start()
    yield chosen
    chosen.halt.set()
    thread.join(10)
    assert not thread.is_alive()


def until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def running(launcher: eru_beat.Launcher) -> bool:
    beat = launcher.beat
    return beat is not None and beat.poll() is None


def test_beat_runs_while_leading_and_stops_when_the_lease_is_lost(
    election: FakeElection, launcher: eru_beat.Launcher
) -> None:
    until(lambda: running(launcher))
    first = launcher.beat
    assert first is not None
    election.keep, election.win = False, False  # the lease ran out; someone else holds the key
    until(lambda: first.poll() is not None)  # refreshed every ttl/3 = 1 s
    time.sleep(1.5)
    assert launcher.beat is None  # and no other starts while another leads
    election.win = election.keep = True
    until(lambda: running(launcher))


def test_an_etcd_failure_stops_beat_and_the_end_resigns(
    election: FakeElection, launcher: eru_beat.Launcher
) -> None:
    until(lambda: running(launcher))
    first = launcher.beat
    assert first is not None
    election.fail = True
    until(lambda: first.poll() is not None)
    assert launcher.lease is None
    election.fail = False
    until(lambda: running(launcher))
    beat = launcher.beat
    launcher.halt.set()
    until(lambda: beat is not None and beat.poll() is not None)
    until(lambda: election.resigned == [7])


def test_beat_that_exits_is_started_again_while_leading(
    election: FakeElection, launcher: eru_beat.Launcher
) -> None:
    until(lambda: running(launcher))
    first = launcher.beat
    assert first is not None
    first.kill()
    until(lambda: running(launcher) and launcher.beat is not first)


def test_a_refresh_that_hangs_past_the_lease_kills_beat(
    election: FakeElection, launcher: eru_beat.Launcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    until(lambda: running(launcher))
    first = launcher.beat
    assert first is not None
    hung = threading.Event()

    def hang(lease_id: int) -> bool:  # etcd's client stuck on a dead member, past the 3 s lease
        hung.wait(30)
        return True

    monkeypatch.setattr(etcd, "refresh_lease", hang)
    began = time.monotonic()
    until(lambda: first.poll() is not None, timeout=5)
    assert time.monotonic() - began < launcher.ttl  # before the lease could run out under it
    hung.set()
