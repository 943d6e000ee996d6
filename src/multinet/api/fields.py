"""Validated field types shared by the parameters and the claim config models.

Each type parses the value as it arrives from JSON (strings for addresses, integers for the MTU) and
fails with a rule phrased for people; ``problems.messages`` adds the field path. Parsed values are
``ipaddress`` objects so callers never re-parse; they serialise back to the strings users wrote.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator
from pydantic.alias_generators import to_camel

from multinet.api.problems import show

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

IFNAMSIZ = 16  # the kernel's buffer, NUL included: names have at most 15 bytes
MTU_MIN, MTU_MAX = 68, 65535  # RFC 791 minimum; the netlink attribute is 16-bit in practice
IPV6_MIN_MTU = 1280  # RFC 8200
POD_OWN_IFNAMES = ("lo", "eth0")  # the pod sandbox's loopback and cluster-network interface

# List bounds. The apiserver caps opaque claim/class config at 10 KiB; with every list full and
# every entry at its longest (IPv6 in its longest spelling) a claim config stays below 5 KiB and
# PodNetwork parameters below 9 KiB, so any document we accept also fits there, whitespace aside.
MAX_INTERFACE_NAMES = 32  # interfaces.names: exact names and globs, at most 64 characters each
MAX_ROUTES = 32  # routes, in PodNetwork parameters and in claim config
MAX_ADDRESSES = 16  # claim config addresses
MAX_EXCLUDE = 32  # ipam.exclude


def _string(value: Any, example: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string like {example}, got {show(value)}")
    return value


# Characters no interface name may hold: dev_valid_name refuses "/" and ":"; "%" makes the
# kernel treat the name as a template ("net%d") or refuse it; NUL would end the C string early.
_IFNAME_FORBIDDEN = (("/", '"/"'), (":", '":"'), ("%", '"%"'), ("\0", "NUL"))


def check_ifname(value: Any) -> str:
    """A name the kernel accepts for a network interface (dev_valid_name)."""
    name = _string(value, '"net1"')
    if not name:
        raise ValueError('must be 1-15 characters, got ""')
    try:
        size = len(name.encode())
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") survives JSON decoding
        raise ValueError(f"must be valid Unicode text, got {show(name)}") from None
    if size >= IFNAMSIZ:
        raise ValueError(f"must be at most {IFNAMSIZ - 1} characters, got {show(name)}")
    if name in (".", ".."):
        raise ValueError(f'must not be "." or "..", got {show(name)}')
    for bad, label in _IFNAME_FORBIDDEN:
        if bad in name:
            raise ValueError(f"must not contain {label}, got {show(name)}")
    if any(ch.isspace() for ch in name):
        raise ValueError(f"must not contain whitespace, got {show(name)}")
    return name


def check_pod_ifname(value: Any) -> str:
    """A name for our interface inside the pod: a valid name the sandbox does not already use."""
    name = check_ifname(value)
    if name in POD_OWN_IFNAMES:
        raise ValueError(
            f'must not be "lo" or "eth0" (the pod\'s own interfaces), got {show(name)}'
        )
    return name


def _unscoped(text: str) -> str:
    # ipaddress accepts "fe80::1%eth0", but the zone names an interface of whichever netns parses
    # it; the address is configured inside the pod, where that name means something else or
    # nothing, and netlink carries no zone at all.
    if "%" in text:
        raise ValueError(f'must not have a zone index ("%..."), got {show(text)}')
    return text


def check_network(value: Any) -> IPNetwork:
    """A CIDR naming a network: ``10.1.0.0/24``; host bits must be zero."""
    text = _unscoped(_string(value, '"10.1.0.0/24"'))
    if "/" not in text:
        raise ValueError(f"must be a CIDR like 10.1.0.0/24, got {show(text)}")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"is not a valid CIDR, got {show(text)}") from exc
        raise ValueError(f"has host bits set, got {show(text)} (the network is {loose})") from exc


def check_address(value: Any) -> IPAddress:
    """A single IPv4 or IPv6 address without a prefix length."""
    text = _unscoped(_string(value, '"10.1.0.1"'))
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:
        raise ValueError(f"is not an IP address, got {show(text)}") from exc


def check_interface_address(value: Any) -> IPInterface:
    """An address with its prefix length, as assigned to an interface: ``10.1.0.5/24``."""
    text = _unscoped(_string(value, '"10.1.0.5/24"'))
    if "/" not in text:
        raise ValueError(f"must be an address/prefix like 10.1.0.5/24, got {show(text)}")
    try:
        return ipaddress.ip_interface(text)
    except ValueError as exc:
        raise ValueError(f"is not a valid address/prefix, got {show(text)}") from exc


def check_address_or_network(value: Any) -> IPNetwork:
    """``10.1.0.7`` (one address) or ``10.1.0.128/25`` (a block)."""
    text = _unscoped(_string(value, '"10.1.0.7" or "10.1.0.128/25"'))
    if "/" in text:
        return check_network(text)
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        raise ValueError(f"is not an IP address or CIDR, got {show(text)}") from exc


_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def check_mac(value: Any) -> str:
    """A unicast Ethernet address, normalised to lower case: ``02:00:00:00:00:01``."""
    text = _string(value, '"02:00:00:00:00:01"').lower()
    if not _MAC.match(text):
        raise ValueError(f"must be a MAC address like 02:00:00:00:00:01, got {show(value)}")
    if int(text[:2], 16) & 1:
        raise ValueError(f"must be a unicast MAC address (first octet even), got {show(value)}")
    if text == "00:00:00:00:00:00":
        raise ValueError("must not be all zeros")
    return text


def check_mtu(value: Any) -> int:
    if type(value) is not int:
        raise ValueError(f"must be an integer, got {show(value)}")
    if not MTU_MIN <= value <= MTU_MAX:
        raise ValueError(f"must be between {MTU_MIN} and {MTU_MAX}, got {value}")
    return value


_to_str = PlainSerializer(str, return_type=str)

IfName = Annotated[str, PlainValidator(check_ifname)]
PodIfName = Annotated[str, PlainValidator(check_pod_ifname)]
Network = Annotated[IPNetwork, PlainValidator(check_network), _to_str]
Address = Annotated[IPAddress, PlainValidator(check_address), _to_str]
InterfaceAddress = Annotated[IPInterface, PlainValidator(check_interface_address), _to_str]
AddressOrNetwork = Annotated[IPNetwork, PlainValidator(check_address_or_network), _to_str]
Mac = Annotated[str, PlainValidator(check_mac)]
Mtu = Annotated[int, PlainValidator(check_mtu)]


_GLOB = set("*?[")


def check_name_pattern(value: Any) -> str:
    """An interface name, or an ``fnmatch`` glob over names (``eth*``, ``ens[0-3]``)."""
    text = _string(value, '"eth1" or "ens*"')
    if not _GLOB & set(text):
        return check_ifname(text)
    if any(ch.isspace() for ch in text) or "/" in text or ":" in text:
        raise ValueError(f'a pattern must not contain whitespace, "/" or ":", got {show(text)}')
    for bad, label in _IFNAME_FORBIDDEN:
        if bad in text:  # no valid name holds these, so such a pattern could never match
            raise ValueError(f"a pattern must not contain {label}, got {show(text)}")
    if len(text) > 64:
        raise ValueError(f"a pattern must be at most 64 characters, got {show(text)}")
    opened = text.find("[")
    if opened >= 0 and "]" not in text[opened + 2 :]:
        raise ValueError(f'has an unclosed "[", got {show(text)}')
    return text


NamePattern = Annotated[str, PlainValidator(check_name_pattern)]


class StrictModel(BaseModel):
    """Base of every configuration document: strict types, camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
    )
