"""The inventory's default-route facts from raw rtnetlink messages; no kernel.

Cases:
- default routes decoded from the output interface, multipath hops, and a nexthop object alone
  (RTA_NH_ID only, as with nexthop_compat_mode=0; in compat mode the object stays the key)
- routes that are not main-table default routes are ignored
- nexthop objects and groups are followed to their devices; a missing member or a loop ends
- the reader's view: a route through a group, the member flushed with its device, the object
  replaced onto another device, the group deleted together with the route through it
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

from multinet.devices.model import Link
from multinet.netlink.kernelview import (
    KernelView,
    Nexthop,
    Route,
    default_route,
    nexthop,
    route_devices,
)


def link(index: int, ifname: str) -> Link:
    return Link(index=index, ifname=ifname)


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def route_body(
    *attrs: bytes, family: int = socket.AF_INET, dst_len: int = 0, table: int = 254
) -> bytes:
    return struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 3, 0, 1, 0) + b"".join(attrs)


def hop(ifindex: int) -> bytes:
    return struct.pack("=HBBi", 8, 0, 0, ifindex)


def nexthop_body(nhid: int, *, oif: int | None = None, group: Sequence[int] = ()) -> bytes:
    attrs = attr(1, u32(nhid))
    if oif is not None:
        attrs += attr(5, u32(oif))
    if group:
        attrs += attr(2, b"".join(struct.pack("=IBBH", g, 0, 0, 0) for g in group))
    return struct.pack("=BBBBI", 0, 0, 0, 0, 0) + attrs


def test_default_routes_decoded_from_oif_multipath_and_nexthop_id() -> None:
    by_oif = default_route(route_body(attr(4, u32(2)), attr(5, bytes([198, 51, 100, 1]))))
    assert by_oif is not None and by_oif[1] == Route(oifs=(2,))
    ecmp = default_route(route_body(attr(9, hop(3) + hop(4)), family=socket.AF_INET6))
    assert ecmp is not None and ecmp[1] == Route(oifs=(3, 4))
    # nexthop_compat_mode=0: RTA_NH_ID and nothing else
    only_nh = default_route(route_body(attr(30, u32(7))))
    assert only_nh is not None and only_nh[1] == Route(nhid=7)
    # compat mode adds the resolved oif; the object stays the truth (and the key)
    compat = default_route(route_body(attr(30, u32(7)), attr(4, u32(2))))
    assert compat is not None and compat == only_nh


def test_other_routes_are_not_default_routes() -> None:
    assert default_route(route_body(attr(4, u32(2)), dst_len=24)) is None
    assert default_route(route_body(attr(4, u32(2)), table=100)) is None
    assert default_route(route_body(attr(4, u32(2)), attr(15, u32(100)))) is None
    assert default_route(b"\0\0") is None


def test_nexthop_objects_and_groups_lead_to_their_devices() -> None:
    assert nexthop(nexthop_body(7, oif=3)) == (7, _nexthop_of(oif=3))
    assert nexthop(nexthop_body(9, group=(7, 8))) == (9, _nexthop_of(group=(7, 8)))
    assert nexthop(struct.pack("=BBBBI", 0, 0, 0, 0, 0)) is None
    nexthops = {7: _nexthop_of(oif=3), 8: _nexthop_of(oif=4), 9: _nexthop_of(group=(7, 8, 404))}
    assert route_devices(Route(nhid=9), nexthops) == {3, 4}
    assert route_devices(Route(nhid=7), nexthops) == {3}
    assert route_devices(Route(nhid=404), nexthops) == frozenset()
    loop = {1: _nexthop_of(group=(2,)), 2: _nexthop_of(oif=5, group=(1,))}
    assert route_devices(Route(nhid=1), loop) == {5}


def _nexthop_of(*, oif: int | None = None, group: tuple[int, ...] = ()) -> Nexthop:
    found = nexthop(nexthop_body(1, oif=oif, group=group))
    assert found is not None
    return found[1]


def test_the_kernel_view_follows_nexthop_objects_and_forgets_what_goes() -> None:
    kernel = KernelView()
    for index, name in ((2, "exa"), (3, "exb")):
        kernel.links[index] = link(index, name)
    kernel.apply_raw(104, nexthop_body(7, oif=2))
    kernel.apply_raw(104, nexthop_body(8, oif=3))
    kernel.apply_raw(104, nexthop_body(9, group=(7, 8)))
    kernel.apply_raw(24, route_body(attr(30, u32(9))))
    assert kernel.snapshot().default_route_ifindexes == {2, 3}
    kernel.apply({"header": {"type": 17}, "index": 3})  # exb deleted: nexthop 8 flushed with it
    assert kernel.snapshot().default_route_ifindexes == {2}
    kernel.apply_raw(104, nexthop_body(7, oif=3))  # replaced onto another device
    assert kernel.snapshot().default_route_ifindexes == {3}
    kernel.apply_raw(105, nexthop_body(9))  # the group goes, and the route through it
    assert kernel.routes == {} and kernel.snapshot().default_route_ifindexes == frozenset()
