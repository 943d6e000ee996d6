"""Hold a reference on every pod netns we put an interface into, until it is back on the host.

Why: the runtime does not always tell us a pod is stopping. containerd 2.1 sends no NRI
StopPodSandbox for sandboxes it recovered after its own restart (observed here), so the
netns is torn down with our interface still inside: a veth or macvlan dies with it, a physical
NIC falls back to the host under its pod-side name. An open file descriptor on a network
namespace keeps it alive after its bind mount is removed, so with a pin we can still move the
interface out (through /proc/self/fd/N) when we learn of the teardown later, from
NodeUnprepareResources or RemovePodSandbox. A pin lasts as long as this process; after a
restart, Synchronize pins the netns of the pods that still exist.

I/O: open and close of nsfs files, microseconds, fine inside the NRI deadline.
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger(__name__)


class NetnsPins:
    """Open descriptors on pod network namespaces, by attachment (plan) key."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def pin(self, key: str, netns: str) -> None:
        if key in self._fds:
            return
        try:
            self._fds[key] = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:  # the netns is already gone: nothing to hold
            log.warning("cannot pin netns %s: %s", netns, exc, extra={"attachment": key})

    def path(self, key: str, netns: str) -> str:
        """Where to reach the netns of `key`: its own path while it exists, else our pin."""
        fd = self._fds.get(key)
        if fd is None or os.path.exists(netns):
            return netns
        return f"/proc/self/fd/{fd}"

    def pinned(self, key: str) -> bool:
        return key in self._fds

    def unpin(self, key: str) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __len__(self) -> int:
        return len(self._fds)


def netns_gone(path: str) -> bool:
    """True once the runtime removed the pod's netns (its bind-mount file is deleted with it)."""
    return not os.path.exists(path)
