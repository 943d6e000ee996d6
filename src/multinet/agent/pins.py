"""Hold every pod netns we put an interface into, until the interface is back on the host, even
across a crash of the agent.

Why: the runtime does not always tell us a pod is stopping, and we may be down when it does.
containerd 2.1 sends no NRI StopPodSandbox for sandboxes it recovered after its own restart
(observed here), and an agent killed mid-teardown misses the Stop it was handling; the runtime
then tears the netns down with our interface still inside: a veth or macvlan dies with it, a
physical NIC falls back to the host under its pod-side name. A pin is a bind mount of the pod's
netns onto a file under `<state-dir>/pins/`, made before the interface moves in: a mount keeps
the namespace alive after the runtime removes its own mount and after our process dies, so the
interface can still be moved out (through the pin's path) when we learn of the teardown later,
from Synchronize after a restart, NodeUnprepareResources or RemovePodSandbox. A pin is also the
record that an attach began: the attachment itself is written only after the runtime has its
answer, so a pin of a prepared plan without a recorded attachment is an attach that may have
moved an interface before a crash (`Releaser.adopt_unrecorded` brings it home). Pins of plans
nobody holds any more are dropped by `prune`.

In a container the pins live in the agent's mount namespace, and outlive a crash of the process
but not of the container, unless the state directory is mounted with Bidirectional propagation.

I/O: one file create and one mount(2) per attachment (tens of microseconds), fine inside the
NRI deadline.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_MS_BIND = 0x1000
_MNT_DETACH = 0x2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount_bind(source: str, target: str) -> None:
    if _libc.mount(source.encode(), target.encode(), None, _MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind-mount {source} on {target}: {os.strerror(err)}")


def _unmount(target: str) -> None:
    if _libc.umount2(target.encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(err, f"unmount {target}: {os.strerror(err)}")


def pin_name(key: str) -> str:
    """The pin's file name for an attachment key (keys hold '/' and may be long)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class NetnsPins:
    """Bind mounts of pod network namespaces, by attachment (plan) key, under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _file(self, key: str) -> Path:
        return self.directory / pin_name(key)

    def pin(self, key: str, netns: str) -> None:
        """Pin the netns at path `netns` for `key` (no-op when already pinned)."""
        target = self._file(key)
        if os.path.ismount(target):
            return
        try:
            target.touch(mode=0o600, exist_ok=True)
            _mount_bind(netns, str(target))
        except OSError as exc:  # the netns is already gone: nothing to hold
            log.warning("cannot pin netns %s: %s", netns, exc, extra={"attachment": key})
            target.unlink(missing_ok=True)

    def file(self, key: str) -> str:
        """The pin's own path (a netns path while pinned)."""
        return str(self._file(key))

    def path(self, key: str, netns: str) -> str:
        """Where to reach the netns of `key`: its own path while it exists, else our pin."""
        if os.path.exists(netns) or not self.pinned(key):
            return netns
        return str(self._file(key))

    def pinned(self, key: str) -> bool:
        return os.path.ismount(self._file(key))

    def unpin(self, key: str) -> None:
        self._release(self._file(key))

    def _release(self, target: Path) -> None:
        try:
            _unmount(str(target))
            target.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot unpin %s: %s", target, exc)

    def prune(self, keep: Iterable[str]) -> list[str]:
        """Release every pin whose key is not in `keep` (the attachments still recorded);
        returns the file names released."""
        wanted = {pin_name(k) for k in keep}
        dropped = []
        for target in self.directory.iterdir():
            if target.name not in wanted:
                self._release(target)
                dropped.append(target.name)
        return dropped

    def __len__(self) -> int:
        return sum(1 for t in self.directory.iterdir() if os.path.ismount(t))


def netns_gone(path: str) -> bool:
    """True once the runtime removed the pod's netns (its bind-mount file is deleted with it)."""
    return not os.path.exists(path)
