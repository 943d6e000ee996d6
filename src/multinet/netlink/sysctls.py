"""Reading and writing a network namespace's sysctls (`/proc/sys/net/...`) from a worker thread.

/proc/sys/net is not a per-process view like /proc/self: the kernel resolves every name under it
against the netns of the *calling thread* (`current->nsproxy->net_ns`; a directory entry of one
namespace does not match a lookup from another). So, as `netns.socket_in` does for sockets, we
move only the calling thread into the pod's namespace with setns(2) (`netns.entered`), open and
write the files, and move it straight back; the other threads stay in the host's namespace all
along (the root tests check that a host thread reading the same key meanwhile sees the host's
value). Two consequences worth knowing:

- The file must be *opened* inside: an open file stays bound to the namespace it was opened in,
  whichever namespace the writing thread is in later.
- Only keys under `net` are accepted. Other sysctls (kernel.*, vm.*, ...) are not per network
  namespace, so "writing one in the pod" would change the host. Inside a namespace other than the
  host's, the host-wide `net.*` keys (most of net.core, the net.ipv4 memory limits) do not exist
  at all: they fail with ENOENT instead of reaching the host.

Not /proc/self/net or /proc/net: those follow the thread-group leader's namespace, not the
calling thread's.

Keys are given as path components, ("net", "ipv4", "conf", "eth0.100", "arp_ignore"), because an
interface name may hold dots; `name()` spells them as sysctl(8) does (dots inside a component as
'/': net.ipv4.conf.eth0/100.arp_ignore).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from multinet.netlink import netns

Key = Sequence[str]

_ROOT = "/proc/sys"
_WHAT = " into the pod's network namespace (for sysctls)"
_REASONS = {
    errno.ENOENT: "no such sysctl in the pod",
    errno.EINVAL: "value refused",
    errno.EPERM: "not allowed in the pod's namespace",
}


class SysctlError(OSError):
    """A sysctl the kernel refused: `key` names it (sysctl(8) spelling), `value` is what we wrote
    (None for a read); `str()` gives our reason and the kernel's words."""

    def __init__(self, code: int, key: str, value: str | None, *, undo: str = "") -> None:
        self.key = key
        self.value = value
        what = f"sysctl {key}" + (f"={value}" if value is not None else "")
        if code == errno.EACCES:  # the file's mode says no: 0444 keys, or 0200 ones for a read
            reason = "write-only sysctl" if value is None else "read-only sysctl"
        else:
            reason = _REASONS.get(code, "failed")
        text = f"{what}: {reason} ({os.strerror(code)})"
        if undo:
            text += f"; putting back the earlier values also failed: {undo}"
        super().__init__(code, text)


def name(key: Key) -> str:
    """The key as sysctl(8) prints it: components joined by '.', their own dots shown as '/'."""
    return ".".join(part.replace(".", "/") for part in key)


def apply(netns_fd: int, items: Sequence[tuple[Key, str]]) -> list[str | None]:
    """Write each (key, value) in order inside the namespace `netns_fd`; return the values they
    had before, in the same order, for putting back later. None for a write-only key (an action
    such as net.ipv4.route.flush): there is nothing to put back.

    All or nothing: when one write fails, the ones before it get their old values back and
    SysctlError names the key that failed. ValueError (before anything is written) for a key
    outside `net` or with a component that is not a plain file name.
    """
    paths = [_path(key) for key, _ in items]
    with netns.entered(netns_fd, _WHAT):
        return _write_all(paths, items)


def read(netns_fd: int, key: Key) -> str:
    """The current value inside the namespace `netns_fd`, without the trailing newline."""
    path = _path(key)
    with netns.entered(netns_fd, _WHAT):
        try:
            return _read(path)
        except OSError as exc:
            raise SysctlError(exc.errno or errno.EIO, name(key), None) from exc


def _path(key: Key) -> str:
    if not key or key[0] != "net":
        raise ValueError(f"sysctl {name(key)}: not a network-namespace sysctl (net.*)")
    for part in key:
        # An interface name never holds '/' and is never "." or "..": a component that does
        # would walk out of the key's directory.
        if not part or part in (".", "..") or "/" in part or "\0" in part:
            raise ValueError(f"sysctl {name(key)}: {part!r} is not a valid path component")
    return os.path.join(_ROOT, *key)


def _write_all(paths: list[str], items: Sequence[tuple[Key, str]]) -> list[str | None]:
    before: list[str | None] = []
    for i, (path, (key, value)) in enumerate(zip(paths, items, strict=True)):
        try:
            old = _read_if_readable(path)
            _write(path, value)  # a refused write leaves the value as it was
        except OSError as exc:
            undo = _put_back(paths[:i], before)
            raise SysctlError(exc.errno or errno.EIO, name(key), value, undo=undo) from exc
        before.append(old)
    return before


def _put_back(paths: list[str], values: list[str | None]) -> str:
    """Write the old values back, last first; what failed, as text ("" when nothing did)."""
    failed = []
    for path, value in reversed(list(zip(paths, values, strict=True))):
        if value is None:
            continue
        try:
            _write(path, value)
        except OSError as exc:
            failed.append(f"{path}: {os.strerror(exc.errno or errno.EIO)}")
    return "; ".join(failed)


def _read_if_readable(path: str) -> str | None:
    try:
        return _read(path)
    except PermissionError:
        if os.access(path, os.W_OK):
            return None  # write-only
        raise


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode().rstrip("\n")


def _write(path: str, value: str) -> None:
    # One write() from offset 0: the kernel parses the whole value from a single call.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
