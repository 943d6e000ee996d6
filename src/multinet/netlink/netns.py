"""Network namespaces: open one by path and get an rtnetlink socket that lives inside it.

A netlink socket belongs to the namespace its creating thread was in at `socket()` time and stays
there. So to talk to a pod's namespace we switch only the calling thread with setns(2), create the
socket, and switch straight back: no forked helper process (pyroute2's `netns=` forks one per
socket, milliseconds), and the rest of the process never leaves the host namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator

from multinet.netlink.rtnl import Rtnl

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsGone(OSError):
    """The namespace path does not exist (any more)."""


def setns(fd: int, what: str = "") -> None:
    """Move the calling thread into the network namespace `fd` (setns(2)); `what` names it in
    the error. The one wrapper of the syscall: the attach path and the inventory both use it."""
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns{what}: {os.strerror(code)}")


@contextlib.contextmanager
def opened(path: str) -> Iterator[int]:
    """An fd for the namespace at `path` (e.g. /var/run/netns/cni-...), closed on exit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetnsGone(exc.errno, f"network namespace {path} does not exist") from exc
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(netns_fd: int, what: str = "") -> Iterator[None]:
    """The calling thread (only it) inside the namespace `netns_fd` for the block, then back
    where it was; `what` names the namespace in a setns error."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(netns_fd, what)
        try:
            yield
        finally:
            # Failing to come back would leave this worker thread in a pod's namespace, where a
            # later host-side call would act on the wrong interfaces: better to stop loudly.
            try:
                setns(home)
            except OSError as exc:  # pragma: no cover - the kernel gave us the fd a moment ago
                raise SystemExit(f"cannot return to the host network namespace: {exc}") from exc
    finally:
        os.close(home)


def socket_in(netns_fd: int) -> Rtnl:
    """An rtnetlink socket inside the namespace `netns_fd`; the thread ends where it started."""
    with entered(netns_fd):
        return Rtnl()


class _Local(threading.local):
    def __init__(self) -> None:
        self.host: Rtnl | None = None
        self.host_fd: int | None = None


_local = _Local()


def host() -> tuple[Rtnl, int]:
    """This thread's socket and namespace fd for the host (agent's) namespace, made once per thread.

    Reused across calls because creating a socket costs more than most requests on it.
    """
    if _local.host is None or _local.host_fd is None:
        _local.host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        _local.host = Rtnl()
    return _local.host, _local.host_fd
