"""Low descriptors kept for libnftables, whose select() aborts at 1024 and above."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

import pytest

from runtad.lowfds import FD_SETSIZE, LowDescriptorReserve, LowDescriptorsExhausted


@pytest.fixture
def reserve() -> Iterator[LowDescriptorReserve]:
    created = LowDescriptorReserve()
    yield created
    created.close()


@pytest.fixture
def many_descriptors() -> Iterator[list[int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        pytest.skip("needs a hard limit of at least 4096 open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    opened: list[int] = []
    yield opened
    for fd in opened:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_open_low_below_fd_setsize_when_busy(reserve: LowDescriptorReserve, many_descriptors: list[int]) -> None:
    assert reserve.fill() > 100
    many_descriptors.extend(os.open(os.devnull, os.O_RDONLY) for _ in range(1200))
    assert min(many_descriptors) >= FD_SETSIZE - 8

    fd = reserve.open_low(lambda: os.open(os.devnull, os.O_RDONLY))
    many_descriptors.append(fd)
    assert fd < FD_SETSIZE


def test_exhausted_reserve_raises(reserve: LowDescriptorReserve, many_descriptors: list[int]) -> None:
    reserve.fill()
    with pytest.raises(LowDescriptorsExhausted, match="delete unused sandboxes"):
        for _ in range(FD_SETSIZE):
            many_descriptors.append(reserve.open_low(lambda: os.open(os.devnull, os.O_RDONLY)))


def test_top_up_reclaims_closed_slot(reserve: LowDescriptorReserve, many_descriptors: list[int]) -> None:
    reserve.fill()
    before = reserve.available
    fd = reserve.open_low(lambda: os.open(os.devnull, os.O_RDONLY))
    assert reserve.available == before - 1
    os.close(fd)
    reserve.top_up()
    assert reserve.available == before


def test_take_without_fill_returns_none(reserve: LowDescriptorReserve) -> None:
    assert reserve.take() is None


def test_take_returns_placeholder(reserve: LowDescriptorReserve) -> None:
    count = reserve.fill()

    fd = reserve.take()

    assert fd is not None
    assert fd < FD_SETSIZE
    assert reserve.available == count - 1
    assert os.readlink(f"/proc/self/fd/{fd}") == os.devnull
    reserve.give_back(fd)


def test_give_back_replaces_descriptor(reserve: LowDescriptorReserve) -> None:
    count = reserve.fill()
    fd = reserve.take()
    assert fd is not None
    reader, writer = os.pipe()
    os.dup2(reader, fd)
    os.close(reader)

    reserve.give_back(fd)

    os.close(writer)
    assert reserve.available == count
    assert os.readlink(f"/proc/self/fd/{fd}") == os.devnull
