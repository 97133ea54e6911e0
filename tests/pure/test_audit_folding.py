"""Folding of repeated audit events inside the fold window."""

from __future__ import annotations

import dataclasses

from runtad.audit.folding import Folder
from runtad.audit.model import Action, Reason, Source
from tests.pure.audit_helpers import FakeClock, make_event


def test_fold_a_and_aaaa_into_one() -> None:
    clock = FakeClock()
    folder = Folder(2.0, 100, clock)
    folder.add(make_event("example.com"))  # the A query
    folder.add(make_event("example.com"))  # the AAAA query
    clock.advance(2.0)
    released = folder.pop_due()
    assert len(released) == 1
    assert released[0].count == 2


def test_fold_keeps_different_hosts_apart() -> None:
    clock = FakeClock()
    folder = Folder(2.0, 100, clock)
    folder.add(make_event("example.com"))
    folder.add(make_event("example.org"))
    clock.advance(2.0)
    assert [event.host for event in folder.pop_due()] == ["example.com", "example.org"]


def test_fold_keeps_different_ports_apart() -> None:
    clock = FakeClock()
    folder = Folder(2.0, 100, clock)
    folder.add(make_event(None, address="198.51.100.7", port=80))
    folder.add(make_event(None, address="198.51.100.7", port=443))
    assert len(folder.pop_all()) == 2


def test_fold_keeps_gateway_path_apart_from_kernel() -> None:
    folder = Folder(2.0, 100, FakeClock())
    kernel = make_event(
        "api.test", action=Action.ALLOW, reason=Reason.ALLOWED_BY_POLICY, address="192.0.2.20", port=80
    )
    kernel = dataclasses.replace(kernel, source=Source.KERNEL, protocol="tcp")
    gateway = dataclasses.replace(kernel, source=Source.GATEWAY, protocol="http", path="/packages/x")
    folder.add(kernel)
    folder.add(gateway)
    released = folder.pop_all()
    assert len(released) == 2
    assert released[1].path == "/packages/x"


def test_fold_keeps_different_paths_apart() -> None:
    folder = Folder(2.0, 100, FakeClock())
    first = dataclasses.replace(make_event("api.test"), source=Source.GATEWAY, protocol="http", path="/a")
    folder.add(first)
    folder.add(dataclasses.replace(first, path="/b"))
    assert [event.path for event in folder.pop_all()] == ["/a", "/b"]


def test_fold_holds_until_window_ends() -> None:
    clock = FakeClock()
    folder = Folder(2.0, 100, clock)
    folder.add(make_event())
    clock.advance(1.9)
    assert folder.pop_due() == []
    assert folder.next_deadline() == 1002.0


def test_fold_repeat_after_window_is_new_event() -> None:
    clock = FakeClock()
    folder = Folder(2.0, 100, clock)
    folder.add(make_event())
    clock.advance(2.5)
    first = folder.pop_due()
    folder.add(make_event())
    clock.advance(2.5)
    second = folder.pop_due()
    assert [event.count for event in first + second] == [1, 1]


def test_fold_keeps_first_time() -> None:
    clock = FakeClock()
    folder = Folder(2.0, 100, clock)
    folder.add(make_event(time=100.0))
    folder.add(make_event(time=101.0))
    (event,) = folder.pop_all()
    assert event.time == 100.0


def test_fold_adds_counts_of_counted_events() -> None:
    folder = Folder(2.0, 100, FakeClock())
    folder.add(make_event(count=5))
    folder.add(make_event(count=7))
    (event,) = folder.pop_all()
    assert event.count == 12


def test_fold_bound_releases_oldest_early() -> None:
    folder = Folder(2.0, 2, FakeClock())
    for host in ("a.test", "b.test", "c.test"):
        folder.add(make_event(host))
    released = folder.pop_due()
    assert [event.host for event in released] == ["a.test"]
    assert len(folder) == 2


def test_fold_window_zero_releases_at_once() -> None:
    folder = Folder(0.0, 100, FakeClock())
    folder.add(make_event())
    assert len(folder.pop_due()) == 1
