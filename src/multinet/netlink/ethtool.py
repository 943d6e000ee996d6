"""An interface's offload features (what `ethtool -k` shows and `ethtool -K` sets) through the
kernel's ethtool generic-netlink family, inside a given network namespace.

Why netlink and not the SIOCETHTOOL ioctl: FEATURES_SET takes the feature names `ethtool -k`
prints, and its reply says what the kernel made of the request (which asked-for values it did not
apply, which features changed), so a value the kernel quietly refused is seen at once. It is what
ethtool(8) itself uses on current kernels. Packed by hand with `codec` helpers, like `rtnl`: no
dependency, microseconds per message.

Names: the kernel's own (string set ETH_SS_FEATURES: tx-checksum-ip-generic, rx-gro, ...) and
ethtool(8)'s legacy names (`LEGACY`, `SHORT`: tx-checksumming, gro, ...), which stand for all the
kernel features matching a pattern, exactly as ethtool(8) expands them. A legacy name is on when
any of its features is (how `ethtool -k` shows it): asking it on turns on those of its features
the driver lets change, asking it off turns all of them off.

Nothing is skipped silently: a name the kernel does not know, a fixed feature asked to change, and
a value the kernel accepted but did not apply (a dependency held it back) are `EthtoolError`s
naming the feature. Names and fixed features are checked before anything is sent.

Blocking by design: callers run it on a worker thread. A netlink socket belongs to the namespace
it was made in, so only the calling thread enters the pod's namespace to make it (as
`netns.socket_in` does) and comes straight back.
"""

from __future__ import annotations

import difflib
import errno
import fnmatch
import os
import socket
import struct
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from multinet.api.ethtoolnames import check_feature_name
from multinet.netlink import codec as c
from multinet.netlink.netns import entered
from multinet.netlink.rtnl import _parse_error  # the one reader of NLMSG_ERROR payloads

__all__ = ["LEGACY", "SHORT", "EthtoolError", "Feature", "features", "members", "set_features"]

_NETLINK_GENERIC = 16
_NLM_F_REQUEST, _NLM_F_ACK = 0x1, 0x4
_NLMSG_ERROR = 2
_SOL_NETLINK, _NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 270, 10, 11
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_GENL = struct.Struct("=BBH")  # genlmsghdr: cmd, version, reserved
# <linux/genetlink.h>
_GENL_ID_CTRL, _CTRL_CMD_GETFAMILY = 16, 3
_CTRL_ATTR_FAMILY_ID, _CTRL_ATTR_FAMILY_NAME = 1, 2
# <linux/ethtool_netlink.h>; a reply carries the number of its request
_MSG_STRSET_GET, _MSG_FEATURES_GET, _MSG_FEATURES_SET = 1, 11, 12
_FLAG_COMPACT_BITSETS = 1 << 0
_A_HEADER_DEV_NAME, _A_HEADER_FLAGS = 2, 3
_A_BITSET_BITS, _A_BITSET_VALUE, _A_BITSET_MASK = 3, 4, 5
_A_BITSET_BITS_BIT = 1
_A_BITSET_BIT_NAME, _A_BITSET_BIT_VALUE = 2, 3
_A_STRSET_HEADER, _A_STRSET_STRINGSETS = 1, 2
_A_STRINGSETS_STRINGSET = 1
_A_STRINGSET_ID, _A_STRINGSET_COUNT, _A_STRINGSET_STRINGS = 1, 2, 3
_A_STRINGS_STRING = 1
_A_STRING_INDEX, _A_STRING_VALUE = 1, 2
_A_FEATURES_HEADER, _A_FEATURES_HW, _A_FEATURES_WANTED = 1, 2, 3
_A_FEATURES_ACTIVE, _A_FEATURES_NOCHANGE = 4, 5
_ETH_SS_FEATURES = 4  # <linux/ethtool.h> enum ethtool_stringset
_U32 = struct.Struct("=I")

#: ethtool(8)'s legacy names (off_flag_def in its common.c): each stands for the kernel features
#: matching a pattern with at most one '*', matched against the running kernel's names, so a new
#: kernel's tx-tcp-accecn-segmentation is part of tcp-segmentation-offload, as `ethtool -k` shows.
LEGACY: Final[Mapping[str, str]] = {
    "rx-checksumming": "rx-checksum",
    "tx-checksumming": "tx-checksum-*",
    "scatter-gather": "tx-scatter-gather*",
    "tcp-segmentation-offload": "tx-tcp*-segmentation",
    "udp-fragmentation-offload": "tx-udp-fragmentation",  # gone from kernels since 4.14
    "generic-segmentation-offload": "tx-generic-segmentation",
    "generic-receive-offload": "rx-gro",
    "large-receive-offload": "rx-lro",
    "rx-vlan-offload": "rx-vlan-hw-parse",
    "tx-vlan-offload": "tx-vlan-hw-insert",
    "ntuple-filters": "rx-ntuple-filter",
    "receive-hashing": "rx-hashing",
}
#: The short names `ethtool -K` takes for the legacy names.
SHORT: Final[Mapping[str, str]] = {
    "rx": "rx-checksumming",
    "tx": "tx-checksumming",
    "sg": "scatter-gather",
    "tso": "tcp-segmentation-offload",
    "ufo": "udp-fragmentation-offload",
    "gso": "generic-segmentation-offload",
    "gro": "generic-receive-offload",
    "lro": "large-receive-offload",
    "rxvlan": "rx-vlan-offload",
    "txvlan": "tx-vlan-offload",
    "ntuple": "ntuple-filters",
    "rxhash": "receive-hashing",
}

# Why the kernel keeps a feature from what was asked: the rules of netdev_fix_features()
# (net/core/dev.c) and dev_disable_lro(), with the features whose state the error shows.
_CSUM, _SG = "tx-checksum-ip-generic", "tx-scatter-gather"
_TSO, _TSO6 = "tx-tcp-segmentation", "tx-tcp6-segmentation"
_NEEDS: Final[Mapping[str, tuple[str, tuple[str, ...]]]] = {
    _TSO: (f"it needs {_SG}, and {_CSUM} or tx-checksum-ipv4", (_SG, _CSUM, "tx-checksum-ipv4")),
    _TSO6: (f"it needs {_SG}, and {_CSUM} or tx-checksum-ipv6", (_SG, _CSUM, "tx-checksum-ipv6")),
    "tx-tcp-ecn-segmentation": (f"it needs {_SG}, and {_TSO} or {_TSO6}", (_SG, _TSO, _TSO6)),
    "tx-tcp-mangleid-segmentation": (f"it needs {_SG} and {_TSO}", (_SG, _TSO)),
    "tx-generic-segmentation": (f"it needs {_SG}", (_SG,)),
    "tx-checksum-ipv4": (f"it cannot be on together with {_CSUM}", (_CSUM,)),
    "tx-checksum-ipv6": (f"it cannot be on together with {_CSUM}", (_CSUM,)),
    "rx-gro-hw": ("it needs rx-checksum, and rx-fcs off", ("rx-checksum", "rx-fcs")),
    "rx-lro": (
        "it stays off while rx-gro-hw or rx-fcs is on, and while the interface forwards "
        "(IP forwarding on, or a port of a bridge or bond)",
        ("rx-gro-hw", "rx-fcs"),
    ),
    "tls-hw-tx-offload": (
        f"it needs {_CSUM}, or tx-checksum-ipv4 and tx-checksum-ipv6",
        (_CSUM, "tx-checksum-ipv4", "tx-checksum-ipv6"),
    ),
    "tls-hw-rx-offload": ("it needs rx-checksum", ("rx-checksum",)),
}
_NO_HINT = (
    "the driver, or a device stacked on it (bridge, bond, VLAN), does not allow it "
    "in the current state"
)


class EthtoolError(OSError):
    """A feature request refused or not carried out; the message names the feature, the
    interface and what stands in the way. `result` holds the features' values afterwards when
    the request was sent (a value not applied), else it is empty (nothing was changed)."""

    def __init__(self, code: int, message: str, result: Mapping[str, bool] | None = None) -> None:
        super().__init__(code, message)
        self.result = dict(result or {})


@dataclass(frozen=True, slots=True)
class Feature:
    """One kernel feature of one interface, as `ethtool -k` shows it."""

    active: bool  # on now
    changeable: bool  # False is `ethtool -k`'s "[fixed]"
    wanted: bool  # last asked for; differs from `active` while a dependency holds it back


def features(netns_fd: int, ifname: str) -> dict[str, Feature]:
    """All kernel features of `ifname` in the namespace `netns_fd`, by kernel name."""
    with _socket_in(netns_fd) as genl:
        return _read(genl, _kernel(genl), ifname)


def set_features(netns_fd: int, ifname: str, wanted: Mapping[str, bool]) -> dict[str, bool]:
    """Set features of `ifname` in the namespace `netns_fd` ({name: on}, kernel or legacy names)
    in one request; the active values afterwards of every kernel feature the names stand for.

    The kernel may change other features along (turning tx-checksumming off also turns TCP
    segmentation off): those are not in the result. Raises EthtoolError (see the module).
    """
    with _socket_in(netns_fd) as genl:
        kernel = _kernel(genl)
        before = _read(genl, kernel, ifname)
        asks = _resolve(wanted, before, ifname)
        send = {m: on for name, on, found in asks for m in found if before[m].changeable}
        after = _write(genl, kernel, ifname, send, before) if send else before
    result = {m: after[m].active for _, _, found in asks for m in found}
    missed = [
        (name, on, m)
        for name, on, found in asks
        for m in found
        if m in send and after[m].active != on
    ]
    if missed:
        raise EthtoolError(errno.EINVAL, _not_applied(missed, after, ifname), result)
    return result


def members(name: str, kernel: Collection[str]) -> tuple[str, ...]:
    """The kernel features `name` stands for among `kernel` (the running kernel's names): those
    a legacy name's pattern matches, or the name itself; () when there is none."""
    pattern = LEGACY.get(SHORT.get(name, name))
    if pattern is not None:
        return tuple(k for k in kernel if fnmatch.fnmatchcase(k, pattern))
    return (name,) if name in kernel else ()


# -- the request, checked before anything is sent ------------------------------------------------

_Ask = tuple[str, bool, tuple[str, ...]]  # a name as asked, its value, the kernel features


def _resolve(wanted: Mapping[str, bool], state: Mapping[str, Feature], ifname: str) -> list[_Ask]:
    asks: list[_Ask] = []
    for name, on in wanted.items():
        if why := check_feature_name(name):
            raise EthtoolError(errno.EINVAL, f"ethtool feature name {name!r} {why}")
        if type(on) is not bool:
            raise EthtoolError(errno.EINVAL, f"ethtool feature {name!r}: {on!r} is not on/off")
        found = members(name, state)
        if not found:
            raise EthtoolError(errno.ENOENT, _unknown(name, state, ifname))
        asks.append((name, on, found))
    seen: dict[str, tuple[str, bool]] = {}
    for name, on, found in asks:
        for m in found:
            other, other_on = seen.setdefault(m, (name, on))
            if other_on != on:
                raise EthtoolError(
                    errno.EINVAL,
                    f"ethtool features {other!r} ({_onoff(other_on)}) and {name!r} "
                    f"({_onoff(on)}) ask opposite values of {m} of {ifname}",
                )
    for ask in asks:
        _check_fixed(ask, state, ifname)
    return asks


def _check_fixed(ask: _Ask, state: Mapping[str, Feature], ifname: str) -> None:
    name, on, found = ask
    # On is "any of its features on" (as `ethtool -k` shows a legacy name): one feature that is
    # on or can be turned on is enough, the fixed-off others stay off as with `ethtool -K`.
    if on and any(state[m].active or state[m].changeable for m in found):
        return
    for m in found:
        feature = state[m]
        if not feature.changeable and feature.active != on:
            raise EthtoolError(
                errno.EOPNOTSUPP,
                f"ethtool feature {_label(m, name)} of {ifname} is fixed "
                f"{_onoff(feature.active)} and cannot be changed",
            )


def _unknown(name: str, state: Collection[str], ifname: str) -> str:
    legacy = (n for n in (*LEGACY, *SHORT) if members(n, state))
    known = sorted({*state, *legacy})
    closest = difflib.get_close_matches(name, known, n=1)
    return (
        f"ethtool feature {name!r} is not known to the kernel for {ifname}; known: "
        + ", ".join(known)
        + (f" (closest: {closest[0]})" if closest else "")
    )


def _not_applied(
    missed: list[tuple[str, bool, str]], after: Mapping[str, Feature], ifname: str
) -> str:
    out = []
    for name, on, m in missed:
        why, shown = _NEEDS.get(m, (_NO_HINT, ()))
        now = ", ".join(f"{d} {_onoff(after[d].active)}" for d in shown if d in after)
        out.append(
            f"ethtool feature {_label(m, name)} is still {_onoff(not on)}, not {_onoff(on)}: "
            + why
            + (f" (now {now})" if now else "")
        )
    return f"the kernel accepted but did not apply, on {ifname}: " + "; ".join(out)


def _label(feature: str, asked: str) -> str:
    return repr(feature) if feature == asked else f"{feature!r} (part of {asked!r})"


def _onoff(on: bool) -> str:
    return "on" if on else "off"


# -- messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Kernel:
    family: int  # the "ethtool" generic-netlink family
    names: tuple[str, ...]  # feature names by bit index ("" for an unnamed bit)


# Both stay as they are while the kernel runs (the family is registered once at boot, the names
# are compiled in), so they are asked once per process.
_kernel_cache: list[_Kernel] = []


def _kernel(genl: _Genl) -> _Kernel:
    if not _kernel_cache:
        family = _family_id(genl)
        _kernel_cache.append(_Kernel(family, _feature_names(genl, family)))
    return _kernel_cache[0]


def _family_id(genl: _Genl) -> int:
    body = c.attr(_CTRL_ATTR_FAMILY_NAME, c.string("ethtool"))
    try:
        ((_, attrs),) = genl.request(_GENL_ID_CTRL, _CTRL_CMD_GETFAMILY, body, "find ethtool")
    except EthtoolError as exc:
        if exc.errno != errno.ENOENT:
            raise
        raise EthtoolError(
            errno.ENOENT,
            "the kernel has no ethtool netlink family (Linux 5.6+ with CONFIG_ETHTOOL_NETLINK)",
        ) from exc
    return int(struct.unpack("=H", c.tlvs(attrs, 0)[_CTRL_ATTR_FAMILY_ID][:2])[0])


def _feature_names(genl: _Genl, family: int) -> tuple[str, ...]:
    """The global string set ETH_SS_FEATURES: index i names bit i of every features bitset."""
    which = c.attr(_A_STRINGSET_ID, c.u32(_ETH_SS_FEATURES))
    # The header names no device (a global set) but must be there: without it, EINVAL.
    body = c.nested(_A_STRSET_HEADER)
    body += c.nested(_A_STRSET_STRINGSETS, c.nested(_A_STRINGSETS_STRINGSET, which))
    ((_, attrs),) = genl.request(family, _MSG_STRSET_GET, body, "read ethtool feature names")
    for _, raw in _each(c.tlvs(attrs, 0).get(_A_STRSET_STRINGSETS, b"")):
        one = c.tlvs(raw, 0)
        if _U32.unpack(one[_A_STRINGSET_ID])[0] != _ETH_SS_FEATURES:
            continue
        names = [""] * _U32.unpack(one[_A_STRINGSET_COUNT])[0]
        for _, entry in _each(one.get(_A_STRINGSET_STRINGS, b"")):
            string = c.tlvs(entry, 0)
            index = _U32.unpack(string[_A_STRING_INDEX])[0]
            names[index] = string.get(_A_STRING_VALUE, b"").rstrip(b"\0").decode()
        return tuple(names)
    raise EthtoolError(errno.EPROTO, "the kernel sent no ethtool feature names")


def _header(ifname: str) -> bytes:
    return c.nested(
        _A_FEATURES_HEADER,
        c.attr(_A_HEADER_DEV_NAME, c.string(ifname)),
        c.attr(_A_HEADER_FLAGS, c.u32(_FLAG_COMPACT_BITSETS)),
    )


def _read(genl: _Genl, kernel: _Kernel, ifname: str) -> dict[str, Feature]:
    op = f"read ethtool features of {ifname}"
    ((_, raw),) = genl.request(kernel.family, _MSG_FEATURES_GET, _header(ifname), op)
    attrs = c.tlvs(raw, 0)
    hw, wanted, active, nochange = (
        _bitmap(attrs[a])
        for a in (_A_FEATURES_HW, _A_FEATURES_WANTED, _A_FEATURES_ACTIVE, _A_FEATURES_NOCHANGE)
    )
    return {
        name: Feature(
            active=bool(active >> i & 1),
            # `ethtool -k`'s "[fixed]": not in hw_features, or never changeable at all
            changeable=bool(hw >> i & 1) and not nochange >> i & 1,
            wanted=bool(wanted >> i & 1),
        )
        for i, name in enumerate(kernel.names)
        if name
    }


def _write(
    genl: _Genl,
    kernel: _Kernel,
    ifname: str,
    send: Mapping[str, bool],
    before: Mapping[str, Feature],
) -> dict[str, Feature]:
    """One FEATURES_SET with a value/mask bitset by name (the features not listed keep theirs);
    the features afterwards, from the reply's diff of the active ones."""
    bits = b"".join(
        c.nested(
            _A_BITSET_BITS_BIT,
            c.attr(_A_BITSET_BIT_NAME, c.string(name)),
            c.attr(_A_BITSET_BIT_VALUE, b"") if on else b"",
        )
        for name, on in send.items()
    )
    body = _header(ifname) + c.nested(_A_FEATURES_WANTED, c.nested(_A_BITSET_BITS, bits))
    op = f"set ethtool features of {ifname}"
    for cmd, raw in genl.request(kernel.family, _MSG_FEATURES_SET, body, op, ack=True):
        if cmd == _MSG_FEATURES_SET and _A_FEATURES_ACTIVE in (attrs := c.tlvs(raw, 0)):
            value = _bitmap(attrs[_A_FEATURES_ACTIVE])
            changed = _bitmap(attrs[_A_FEATURES_ACTIVE], _A_BITSET_MASK)
            return {
                name: Feature(
                    active=bool(value >> i & 1) if changed >> i & 1 else before[name].active,
                    changeable=before[name].changeable,
                    wanted=send.get(name, before[name].wanted),
                )
                for i, name in enumerate(kernel.names)
                if name
            }
    return _read(genl, kernel, ifname)  # a kernel that sent no reply: read what it did


def _bitmap(raw: bytes, which: int = _A_BITSET_VALUE) -> int:
    """A compact bitset's value (or mask): 32-bit words in host order, the lowest word first."""
    data = c.tlvs(raw, 0).get(which, b"")
    words = struct.unpack(f"={len(data) // 4}I", data[: len(data) // 4 * 4])
    return sum(word << (32 * i) for i, word in enumerate(words))


def _each(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Every attribute in `data`, repeated types included (codec.tlvs keeps the first)."""
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            return
        yield kind & 0x3FFF, data[off + 4 : off + length]
        off += (length + 3) & ~3


# -- transport ---------------------------------------------------------------------------------


class _Genl:
    """One NETLINK_GENERIC socket; it lives in the namespace its creator was in."""

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_GENERIC)
        try:
            sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
            sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
            sock.bind((0, 0))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._seq = 0

    def __enter__(self) -> _Genl:
        return self

    def __exit__(self, *_: object) -> None:
        self._sock.close()

    def request(
        self, family: int, cmd: int, attrs: bytes, op: str, *, ack: bool = False
    ) -> list[tuple[int, bytes]]:
        """Send one request; its replies as (command, attributes). Without `ack` the first reply
        ends it (a GET), with `ack` the kernel's ack does (a SET, whose reply comes before)."""
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        body = _GENL.pack(cmd, 1, 0) + attrs
        flags = _NLM_F_REQUEST | (_NLM_F_ACK if ack else 0)
        self._sock.send(_HDR.pack(_HDR.size + len(body), family, flags, self._seq, 0) + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            for mtype, mflags, seq, payload in self._messages():
                if seq != self._seq:
                    continue
                if mtype == _NLMSG_ERROR:
                    code, detail = _parse_error(mflags, payload)
                    if code:
                        text = os.strerror(code) + (f" ({detail})" if detail else "")
                        raise EthtoolError(code, f"{op}: {text}")
                    return replies
                replies.append((payload[0], payload[_GENL.size :]))
                if not ack:
                    return replies

    def _messages(self) -> list[tuple[int, int, int, bytes]]:
        buf = self._sock.recv(1 << 17)
        out = []
        off = 0
        while off + _HDR.size <= len(buf):
            length, mtype, flags, seq, _pid = _HDR.unpack_from(buf, off)
            if length < _HDR.size:
                break
            out.append((mtype, flags, seq, buf[off + _HDR.size : off + length]))
            off += (length + 3) & ~3
        return out


def _socket_in(netns_fd: int) -> _Genl:
    """A generic-netlink socket inside the namespace `netns_fd`, made as `netns.socket_in` makes
    its rtnetlink one: only the calling thread goes in, and it comes straight back."""
    with entered(netns_fd, " into the interface's network namespace"):
        return _Genl()
