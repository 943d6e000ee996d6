"""Pure restore decisions and plan checks (no netlink).

Cases: addresses only appended when the current list is a prefix of the wanted one, otherwise
removed secondaries-first and re-added in order; an address whose flags or label differ is redone;
link-local addresses compared like any other (the caller drops the kernel's own); host routes
compared by everything they carry with the kernel's defaults filled in, routes without a gateway
added first; bad plans rejected before any netlink work with the field named.
"""

from __future__ import annotations

from multinet.netlink import steps
from multinet.netlink.attach import check_plan
from multinet.plans import AttachPlan, ClaimRef, HostAddress, HostNextHop, HostRoute, Route


def addrs(*cidrs: str) -> list[HostAddress]:
    return [HostAddress(cidr=c) for c in cidrs]


def address_changes(current: list[str], wanted: list[str]) -> tuple[list[str], list[str]]:
    remove, add = steps.address_changes(addrs(*current), addrs(*wanted))
    return [a.cidr for a in remove], [a.cidr for a in add]


def test_addresses_are_appended_when_the_current_ones_are_a_prefix() -> None:
    assert address_changes([], ["10.0.0.1/24", "10.0.0.2/24"]) == (
        [],
        ["10.0.0.1/24", "10.0.0.2/24"],
    )
    assert address_changes(["10.0.0.1/24"], ["10.0.0.1/24", "10.0.0.2/24"]) == (
        [],
        ["10.0.0.2/24"],
    )
    assert address_changes(["10.0.0.1/24"], ["10.0.0.1/24"]) == ([], [])


def test_wrong_order_or_extras_are_redone_secondaries_first() -> None:
    remove, add = address_changes(["10.0.0.2/24", "10.0.0.1/24"], ["10.0.0.1/24", "10.0.0.2/24"])
    assert remove == ["10.0.0.1/24", "10.0.0.2/24"]
    assert add == ["10.0.0.1/24", "10.0.0.2/24"]
    assert address_changes(["10.0.0.9/24"], []) == (["10.0.0.9/24"], [])


def test_link_local_is_an_address_like_any_other() -> None:
    assert address_changes(["fe80::1/64", "2001:db8::1/64"], ["2001:db8::1/64"]) == (
        ["fe80::1/64", "2001:db8::1/64"],
        ["2001:db8::1/64"],
    )
    assert address_changes([], ["fe80::1/64"]) == ([], ["fe80::1/64"])


def test_an_address_with_other_flags_or_label_is_redone() -> None:
    plain = HostAddress(cidr="198.51.100.7/24")
    labelled = HostAddress(cidr="198.51.100.7/24", label="eth9:a", flags=0x200)
    assert steps.address_changes([plain], [labelled]) == ([plain], [labelled])
    assert steps.address_changes([labelled], [labelled]) == ([], [])


def test_addresses_compare_in_canonical_form() -> None:
    assert address_changes(["2001:db8::1/64"], ["2001:DB8:0::1/64"]) == ([], [])


def test_routes_match_with_the_kernels_defaults() -> None:
    """As read back from the kernel (metric, preference, protocol, scope all set) and as an
    older checkpoint recorded them (unset)."""
    v6_kernel = HostRoute(
        destination="2001:db8:1::/48",
        gateway="2001:db8::1",
        metric=1024,
        pref=0,
        protocol=3,
        scope=0,
    )
    v6_recorded = HostRoute(destination="2001:db8:1::/48", gateway="2001:db8::1")
    v4_kernel = HostRoute(destination="198.51.100.0/24", protocol=3, scope=253)
    v4_recorded = HostRoute(destination="198.51.100.0/24")
    assert steps.route_changes([v6_kernel, v4_kernel], [v6_recorded, v4_recorded]) == ([], [])


def test_routes_differing_in_any_detail_are_replaced() -> None:
    old = HostRoute(destination="10.1.0.0/16", gateway="10.0.0.1")
    for change in (
        {"gateway": "10.0.0.254"},
        {"table": 100},
        {"onlink": True},
        {"scope": 253},
        {"metrics": ((2, 1400),)},
        {"nexthops": (HostNextHop(gateway="10.0.0.1"), HostNextHop(gateway="10.0.0.2"))},
    ):
        new = old.model_copy(update=change)
        assert steps.route_changes([old], [new]) == ([old], [new]), change


def test_routes_without_a_gateway_are_added_first() -> None:
    default = HostRoute(destination="0.0.0.0/0", gateway="198.51.100.1")
    link = HostRoute(destination="198.51.100.0/24")
    multipath = HostRoute(destination="203.0.113.0/24", nexthops=(HostNextHop(gateway="1.2.3.4"),))
    assert steps.route_changes([], [default, multipath, link]) == (
        [],
        [link, default, multipath],
    )


def _plan(**changes: object) -> AttachPlan:
    base = AttachPlan(
        claim=ClaimRef(namespace="ns", name="c", uid="u"),
        request="r",
        pool="p",
        device="d",
        network="n",
        mode="host-device",
        host_ifname="eth9",
        pod_ifname="net1",
    )
    return base.model_copy(update=changes)


def test_check_plan_names_each_bad_field() -> None:
    problems = check_plan(
        _plan(
            pod_ifname="a-name-that-is-too-long",
            addresses=("10.0.0.1/24", "not-an-address"),
            routes=(Route(destination="10.0.0.0/33"),),
            mtu=20,
            mac="02:00:00:00:00",
        )
    )
    assert len(problems) == 5
    assert problems[0].startswith("pod_ifname")
    assert problems[1].startswith("addresses[1] 'not-an-address'")
    assert problems[2].startswith("routes[0] 10.0.0.0/33")
    assert problems[3].startswith("mac '02:00:00:00:00'")
    assert problems[4].startswith("mtu 20")
    assert check_plan(_plan(addresses=("10.0.0.1/24",), mtu=1500)) == []


def test_ipv6_is_listed_newest_first_so_missing_ones_are_added_in_reverse() -> None:
    wanted = ["2001:db8::11/64", "2001:db8::10/64"]  # as `ip addr` shows after adding ::10, ::11
    assert address_changes([], wanted) == ([], ["2001:db8::10/64", "2001:db8::11/64"])
    assert address_changes(["2001:db8::10/64"], wanted) == ([], ["2001:db8::11/64"])
    assert address_changes(wanted, wanted) == ([], [])
    assert address_changes(["2001:db8::11/64"], wanted) == (
        ["2001:db8::11/64"],
        ["2001:db8::10/64", "2001:db8::11/64"],
    )
