"""The one place that hands nftables batches to the kernel, through libnftables' JSON API.

A context is bound to the network namespace it was created in, so each sandbox uses its
own, made inside that namespace and lent by the pool in nftpool.py. A batch is one
kernel transaction: it applies whole or not at all, and callers keep their bookkeeping
only when apply returns.

libnftables is called through ctypes with its functions declared once per process. The
nftables Python module declares them again for every context, which cost about 100 KiB
of Python objects per context (tracemalloc in runtad, an estimate) and leaves a ctypes class cycle for the garbage collector
each time the pool closes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .lowfds import FD_SETSIZE, RESERVE, LowDescriptorsExhausted
from .netns import call_in_netns

Command = dict[str, Any]

# Output flags from libnftables' nftables/libnftables.h: JSON output, no rule handles.
NFT_CTX_OUTPUT_JSON = 1 << 4
NFT_CTX_DEFAULT = 0
# NETLINK_NETFILTER from linux/netlink.h: the protocol of libnftables' socket.
NETLINK_NETFILTER = 12
# Held by every batch that lists something. libnftables 1.0.6 renders a set's type in JSON
# output with strtok (src/json.c, set_dtype_json), whose state is process-wide, so two
# listings on two threads at once can abort the process ("set_dtype_json: Assertion
# `__out' failed"). A later libnftables patch replaced it with strtok_r.
_LISTING = threading.Lock()

# Batches of at most this many commands run on the event loop thread (see run_async).
INLINE_MAX_COMMANDS = 16


class NftError(Exception):
    """libnftables rejected a batch; nothing of it was applied."""

    def __init__(self, netns: str, detail: str) -> None:
        super().__init__(f"nftables batch rejected in {netns}: {detail.strip()}")
        self.netns = netns
        self.detail = detail.strip()


class NftContextClosedError(RuntimeError):
    """A batch was given to a context that was already closed, which is a bug in the caller."""

    def __init__(self, netns: str) -> None:
        super().__init__(f"nftables context of {netns} is closed: take a new one from the pool")
        self.netns = netns


class LibnftablesHandle:
    """One libnftables context that buffers its output and error text, with JSON output."""

    def __init__(self) -> None:
        lib = _libnftables()
        context = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not context:
            raise MemoryError("nft_ctx_new returned NULL: libnftables could not allocate a context")
        lib.nft_ctx_buffer_output(context)
        lib.nft_ctx_buffer_error(context)
        lib.nft_ctx_output_set_flags(context, NFT_CTX_OUTPUT_JSON)
        # Kept here so that __del__ still finds it while the interpreter shuts down.
        self._lib = lib
        self._context: int | None = context
        # The reserved low descriptor the socket was moved onto (see move_to_reserve).
        self._reserved_fd: int | None = None

    def json_cmd(self, document: dict[str, Any]) -> tuple[int, dict[str, Any] | None, str]:
        """Run a JSON document; return the exit status, the parsed output and the error text."""
        assert self._context is not None
        lib = self._lib
        rc = lib.nft_run_cmd_from_buffer(self._context, json.dumps(document).encode())
        output = lib.nft_ctx_get_output_buffer(self._context) or b""
        error = lib.nft_ctx_get_error_buffer(self._context) or b""
        return rc, json.loads(output) if output else None, error.decode(errors="replace")

    def netlink_fd(self) -> int | None:
        """Return the descriptor of the context's netlink socket, or None if it cannot be determined.

        libnftables 1.0.6 (Debian 12) keeps the libmnl socket as the first member of
        struct nft_ctx, and libmnl exports mnl_socket_get_fd. The descriptor is checked to
        be a NETLINK_NETFILTER socket, so another layout gives None, not a wrong number.
        """
        if self._context is None:
            return None
        mnl_socket = ctypes.c_void_p.from_address(self._context).value
        if not mnl_socket:
            return None
        fd = int(_libmnl().mnl_socket_get_fd(mnl_socket))
        try:
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            return None
        with probe:
            is_netfilter = (
                probe.family == socket.AF_NETLINK
                and probe.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL) == NETLINK_NETFILTER
            )
        return fd if is_netfilter else None

    def move_to_reserve(self) -> bool:
        """Move the netlink socket onto a reserved descriptor below FD_SETSIZE.

        dup2 puts the socket on a placeholder's number, and the descriptor in libmnl's
        struct mnl_socket (its first member, in libmnl 1.0.4) is set to that number.
        Returns False when the socket's descriptor cannot be determined.
        """
        fd = self.netlink_fd()
        if fd is None:
            return False
        low = RESERVE.take()
        if low is None:
            raise LowDescriptorsExhausted(
                f"the nftables socket got descriptor {fd}, at or above {FD_SETSIZE}, and no low"
                " descriptors are reserved: call RESERVE.fill() before opening sockets"
            )
        os.dup2(fd, low, inheritable=False)
        _set_socket_fd(self._context, low)
        self._reserved_fd = low
        os.close(fd)
        return True

    def free(self) -> None:
        """Free the context and close its netlink socket; later calls do nothing.

        A socket on a reserved descriptor moves to a high one first, and the reserve gets
        its number back as a placeholder, so that no other thread can take it meanwhile.
        """
        context, self._context = self._context, None
        if context is None:
            return
        if self._reserved_fd is not None:
            low, self._reserved_fd = self._reserved_fd, None
            high = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, FD_SETSIZE)
            _set_socket_fd(context, high)
            RESERVE.give_back(low)
        self._lib.nft_ctx_free(context)



    def __del__(self) -> None:
        self.free()


class NftContext:
    """A libnftables context bound to one network namespace."""

    def __init__(self, netns_label: str, handle: LibnftablesHandle) -> None:
        self.netns_label = netns_label
        self._handle: LibnftablesHandle | None = handle
        # libnftables contexts are not thread-safe; apply may run on any pool thread.
        self._lock = threading.Lock()
        self.last_apply_seconds = 0.0

    @classmethod
    def open(
        cls, netns_path: Path | None,
        enter: Callable[[Path, Callable[[], LibnftablesHandle]], LibnftablesHandle] = call_in_netns,
    ) -> NftContext:
        """Create a context in the namespace at netns_path (None: the daemon's own).

        enter runs the creation inside the namespace: call_in_netns, or a NetnsWorker's call.
        """
        if netns_path is None:
            return cls("host", _open_low_handle(LibnftablesHandle))
        return cls(str(netns_path), _open_low_handle(lambda: enter(netns_path, LibnftablesHandle)))

    @property
    def is_closed(self) -> bool:
        return self._handle is None

    def netlink_fd(self) -> int | None:
        """Return the descriptor of the context's netlink socket (None: closed or unknown)."""
        with self._lock:
            return self._handle.netlink_fd() if self._handle is not None else None

    def try_close(self) -> bool:
        """Free the context and its netlink socket unless a batch is running on it.

        Returns whether it is closed now. Freeing under the lock keeps a batch that
        another thread still runs from using freed memory.
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._handle is not None:
                self._handle.free()
                self._handle = None
        finally:
            self._lock.release()
        return True

    def run(self, commands: list[Command]) -> list[dict[str, Any]]:
        """Apply commands as one transaction and return the output objects (for lists)."""
        document = {"nftables": commands}
        listing = _LISTING if any("list" in command for command in commands) else contextlib.nullcontext()
        with self._lock, listing:
            if self._handle is None:
                raise NftContextClosedError(self.netns_label)
            started = time.perf_counter()
            rc, output, error = self._handle.json_cmd(document)
            self.last_apply_seconds = time.perf_counter() - started
        if rc != 0:
            raise NftError(self.netns_label, error or f"exit status {rc}")
        if not output:
            return []
        return [item for item in output.get("nftables", []) if "metainfo" not in item]

    async def run_async(self, commands: list[Command]) -> list[dict[str, Any]]:
        """Apply commands without stalling the event loop for long.

        A small batch takes tens of microseconds in libnftables, less than handing it to a
        worker thread, so it runs inline when no other batch has the context locked. Large
        batches (a policy of thousands of hosts) go to a thread.
        """
        if len(commands) <= INLINE_MAX_COMMANDS and self._lock.acquire(blocking=False):
            self._lock.release()
            return self.run(commands)
        return await asyncio.to_thread(self.run, commands)


def _open_low_handle(create: Callable[[], LibnftablesHandle]) -> LibnftablesHandle:
    """Create a handle whose netlink socket is below FD_SETSIZE, or raise.

    A batch on a context at or above the limit would abort the whole process. The socket
    is moved onto a reserved low descriptor. If its descriptor cannot be determined (a
    libnftables of another layout), the context is made again with low slots released
    around it, which other threads may take first.
    """
    handle = create()
    fd = handle.netlink_fd()
    if fd is not None and fd < FD_SETSIZE:
        return handle
    try:
        if handle.move_to_reserve():
            return handle
    except BaseException:
        handle.free()
        raise
    handle.free()
    return RESERVE.open_low(create)


def _set_socket_fd(context: int | None, fd: int) -> None:
    """Point the context's struct mnl_socket at descriptor fd (its first member, an int)."""
    assert context is not None
    mnl_socket = ctypes.c_void_p.from_address(context).value
    assert mnl_socket is not None
    ctypes.c_int.from_address(mnl_socket).value = fd
    if _libmnl().mnl_socket_get_fd(mnl_socket) != fd:
        raise RuntimeError(f"libmnl did not take descriptor {fd} for the nftables socket")


@functools.cache
def _libnftables() -> ctypes.CDLL:
    """Load libnftables 1.0.6 (Debian 12) and declare the functions runtad calls."""
    lib = ctypes.CDLL("libnftables.so.1")
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint]
    lib.nft_ctx_free.restype = None
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_set_flags.restype = None
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).restype = ctypes.c_int
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).restype = ctypes.c_char_p
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


@functools.cache
def _libmnl() -> ctypes.CDLL:
    lib = ctypes.CDLL("libmnl.so.0")
    lib.mnl_socket_get_fd.restype = ctypes.c_int
    lib.mnl_socket_get_fd.argtypes = [ctypes.c_void_p]
    return lib
