"""Pure restore decisions and plan checks (no netlink).

Cases: addresses only appended when the current list is a prefix of the wanted one, otherwise
removed secondaries-first and re-added in order; IPv6 link-local ignored both ways; routes compared
by destination, gateway and the kernel's default metric; bad plans rejected before any netlink
work with the field named.
"""

from __future__ import annotations

from multinet.netlink import steps
from multinet.netlink.attach import check_plan
from multinet.plans import AttachPlan, ClaimRef, Route


def test_addresses_are_appended_when_the_current_ones_are_a_prefix() -> None:
    assert steps.address_changes([], ["10.0.0.1/24", "10.0.0.2/24"]) == (
        [],
        ["10.0.0.1/24", "10.0.0.2/24"],
    )
    assert steps.address_changes(["10.0.0.1/24"], ["10.0.0.1/24", "10.0.0.2/24"]) == (
        [],
        ["10.0.0.2/24"],
    )
    assert steps.address_changes(["10.0.0.1/24"], ["10.0.0.1/24"]) == ([], [])


def test_wrong_order_or_extras_are_redone_secondaries_first() -> None:
    remove, add = steps.address_changes(
        ["10.0.0.2/24", "10.0.0.1/24"], ["10.0.0.1/24", "10.0.0.2/24"]
    )
    assert remove == ["10.0.0.1/24", "10.0.0.2/24"]
    assert add == ["10.0.0.1/24", "10.0.0.2/24"]
    assert steps.address_changes(["10.0.0.9/24"], []) == (["10.0.0.9/24"], [])


def test_ipv6_link_local_is_neither_removed_nor_added() -> None:
    assert steps.address_changes(["fe80::1/64", "2001:db8::1/64"], ["2001:db8::1/64"]) == ([], [])
    assert steps.address_changes([], ["fe80::1/64"]) == ([], [])


def test_addresses_compare_in_canonical_form() -> None:
    assert steps.address_changes(["2001:db8::1/64"], ["2001:DB8:0::1/64"]) == ([], [])


def test_routes_match_with_the_kernels_default_metric() -> None:
    v6_kernel = Route(destination="2001:db8:1::/48", gateway="2001:db8::1", metric=1024)
    v6_plan = Route(destination="2001:db8:1::/48", gateway="2001:db8::1")
    v4 = Route(destination="10.1.0.0/16", gateway="10.0.0.1")
    assert steps.route_changes([v6_kernel, v4], [v6_plan, v4]) == ([], [])


def test_routes_differing_in_gateway_are_replaced() -> None:
    old = Route(destination="10.1.0.0/16", gateway="10.0.0.1")
    new = Route(destination="10.1.0.0/16", gateway="10.0.0.254")
    assert steps.route_changes([old], [new]) == ([old], [new])


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
    assert steps.address_changes([], wanted) == ([], ["2001:db8::10/64", "2001:db8::11/64"])
    assert steps.address_changes(["2001:db8::10/64"], wanted) == ([], ["2001:db8::11/64"])
    assert steps.address_changes(wanted, wanted) == ([], [])
    assert steps.address_changes(["2001:db8::11/64"], wanted) == (
        ["2001:db8::11/64"],
        ["2001:db8::10/64", "2001:db8::11/64"],
    )
