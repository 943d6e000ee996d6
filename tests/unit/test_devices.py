"""Host links as devices: naming stability, attributes, exclusions, binding and conflicts.

Cases:
- names: PCI address wins over name and MAC (a NIC renamed in a pod keeps its name), permanent
  MAC next, interface name for virtual links, non-DNS names cleaned injectively, collisions
- attributes: every documented attribute with the right type, PCI standard attributes,
  strings over 64 characters left out, names valid C identifiers <= 32
- exclusions: loopback, default route (and its bridge ports / macvlan parent), CNI bridges,
  pod veth host ends; an exact name in a PodNetwork overrides, a glob does not (the whole table
  of exclusion facts and reasons is in test_exclusion.py)
- binding: exact and glob selection, conflicts bind neither and are reported, macvlan parents
  are shareable with a bounded consumable capacity
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from multinet.devices import attributes, away, binding, naming, networks
from multinet.devices.model import Capacity, Hardware, HostSnapshot, Link
from multinet.devices.resolve import resolve

NIC_HW = Hardware(
    pci_address="0000:3b:00.1",
    pcie_root="pci0000:3a",
    vendor="8086",
    device="1592",
    driver="ice",
    numa_node=1,
    speed=25000,
    sriov_total_vfs=64,
    sriov_num_vfs=8,
)


def nic(index: int = 5, ifname: str = "ens1f1", **kw: object) -> Link:
    base = Link(
        index=index,
        ifname=ifname,
        mac="3c:fd:fe:00:00:01",
        perm_mac="3c:fd:fe:00:00:01",
        mtu=9000,
        up=True,
        oper_state="up",
        hw=NIC_HW,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def veth(index: int, ifname: str, **kw: object) -> Link:
    base = Link(index=index, ifname=ifname, kind="veth", mac="9e:00:00:00:00:01", mtu=1500)
    return replace(base, **kw)  # type: ignore[arg-type]


LO = Link(index=1, ifname="lo", loopback=True, mtu=65536)
ETH0 = Link(
    index=2,
    ifname="eth0",
    mac="02:fc:00:00:00:01",
    perm_mac="02:fc:00:00:00:01",
    hw=Hardware(pci_address="0000:00:03.0", pcie_root="pci0000:00", driver="virtio_net"),
)


# --- naming -----------------------------------------------------------------------------------


def test_pci_nic_keeps_its_name_when_renamed_and_when_its_mac_changes() -> None:
    before = naming.device_name(nic(ifname="ens1f1"))
    after_pod = naming.device_name(nic(ifname="net1", mac="02:00:00:00:00:99"))
    assert before == after_pod == "pci-0000-3b-00-1"
    assert naming.is_dns_label(before)


def test_second_port_of_one_pci_function_gets_its_own_name() -> None:
    port1 = nic(hw=replace(NIC_HW, dev_port=1))
    assert naming.device_name(port1) == "pci-0000-3b-00-1-p1"


def test_hardware_without_pci_is_named_by_permanent_mac() -> None:
    usb = Link(
        index=7,
        ifname="enx3c",
        mac="aa:bb:cc:00:00:01",
        perm_mac="3C:FD:FE:00:00:02",
        hw=Hardware(driver="r8152"),
    )
    assert naming.device_name(usb) == "mac-3cfdfe000002"
    assert naming.device_name(replace(usb, ifname="net2", mac="02:00:00:00:00:01")) == (
        "mac-3cfdfe000002"
    )


def test_virtual_links_are_named_by_interface_name_and_all_zero_perm_mac_is_ignored() -> None:
    assert naming.device_name(veth(3, "nic-a1")) == "nic-a1"
    assert naming.device_name(veth(3, "nic-a1", perm_mac="00:00:00:00:00:00")) == "nic-a1"


def test_names_that_are_not_dns_labels_are_cleaned_without_merging_two_interfaces() -> None:
    upper, lower = naming.from_ifname("Data_0"), naming.from_ifname("data-0")
    assert naming.is_dns_label(upper) and upper.startswith("data-0-")
    assert lower == "data-0" and upper != lower
    assert naming.from_ifname("Data_0") == upper  # deterministic across restarts
    assert naming.is_dns_label(naming.from_ifname("_.-"))


def test_collisions_between_schemes_get_distinct_stable_names() -> None:
    impostor = veth(9, "pci-0000-3b-00-1")
    names = naming.assign_names([nic(), impostor])
    assert len(set(names.values())) == 2
    assert names == naming.assign_names([impostor, nic()])


# --- attributes -------------------------------------------------------------------------------


def test_attributes_of_a_pci_nic() -> None:
    link = nic(ipv4=("192.0.2.5/24", "198.51.100.1/24"), ipv6=("2001:db8::5/64",))
    attrs = attributes.build(link)
    d = "multinet.dev/"
    assert attrs == {
        d + "ifName": "ens1f1",
        d + "mac": "3c:fd:fe:00:00:01",
        d + "mtu": 9000,
        d + "kind": "physical",
        d + "virtual": False,
        d + "state": "up",
        d + "ipv4": "192.0.2.5/24",
        d + "ipv6": "2001:db8::5/64",
        d + "pciAddress": "0000:3b:00.1",
        d + "pciVendor": "8086",
        d + "pciDevice": "1592",
        d + "driver": "ice",
        d + "numaNode": 1,
        d + "speed": 25000,
        d + "sriov": True,
        d + "sriovVfs": 8,
        d + "isSriovVf": False,
        "resource.kubernetes.io/pciBusID": "0000:3b:00.1",
        "resource.kubernetes.io/pcieRoot": "pci0000:3a",
    }
    for name in attrs:
        assert attributes.valid_name(name), name


def test_attributes_of_a_veth_have_no_hardware_facts() -> None:
    attrs = attributes.build(veth(4, "nic-b", oper_state="lowerlayerdown"))
    assert attrs["multinet.dev/kind"] == "veth"
    assert attrs["multinet.dev/virtual"] is True
    assert attrs["multinet.dev/state"] == "lowerlayerdown"
    assert not any("pci" in k.lower() or k.endswith(("/speed", "/sriov")) for k in attrs)


def test_unknown_hardware_facts_are_absent_and_long_strings_are_dropped() -> None:
    hw = Hardware(driver="x" * 65, numa_node=None, speed=None)
    attrs = attributes.build(Link(index=8, ifname="p1", hw=hw))
    assert "multinet.dev/driver" not in attrs
    assert "multinet.dev/numaNode" not in attrs and "multinet.dev/speed" not in attrs
    assert attrs["multinet.dev/sriov"] is False and "multinet.dev/sriovVfs" not in attrs


def test_attribute_name_rules() -> None:
    assert attributes.valid_name("multinet.dev/ifName")
    assert not attributes.valid_name("multinet.dev/" + "a" * 33)
    assert not attributes.valid_name("multinet.dev/if-name")
    assert not attributes.valid_name("multinet.dev/1st")


# --- exclusions -------------------------------------------------------------------------------


def _host(*extra: Link, route: frozenset[int] = frozenset({2})) -> HostSnapshot:
    return HostSnapshot(links=(LO, ETH0, *extra), default_route_ifindexes=route)


def test_loopback_and_default_route_interface_are_never_advertised() -> None:
    res = resolve(_host(nic()))
    assert [d.ifname for d in res.devices] == ["ens1f1"]
    assert res.excluded == {"lo": "loopback", "eth0": "default route"}


def test_ports_of_a_default_route_bridge_and_the_parent_of_a_default_route_macvlan() -> None:
    br = Link(index=10, ifname="br-ex", kind="bridge")
    port = nic(index=11, ifname="ens2", master=10)
    parent = nic(index=12, ifname="ens3", hw=replace(NIC_HW, pci_address="0000:3b:00.2"))
    mv = Link(index=13, ifname="mv0", kind="macvlan", peer=12)
    res = resolve(_host(br, port, parent, mv, route=frozenset({10, 13})))
    assert [d.ifname for d in res.devices] == ["eth0"]  # no default route through it here
    assert res.excluded["ens2"] == "port of default-route interface br-ex"
    assert res.excluded["ens3"] == "parent of default-route interface mv0"


def test_cni_bridges_and_pod_veth_host_ends_are_excluded() -> None:
    cni0 = Link(index=20, ifname="cni0", kind="bridge")
    podbr = Link(index=21, ifname="podbr", kind="bridge")
    on_bridge = veth(22, "h1a2b3c", peer=3, peer_netns=True, master=21)
    ptp = veth(23, "veth1234abcd", peer=3, peer_netns=True)
    test_nic = veth(24, "nic-c", peer=25)  # both ends on the host: a test "NIC"
    nic_peer = veth(25, "nic-c-p", peer=24)
    moved_peer = veth(26, "nic-d-p", peer=3, peer_netns=True)  # its NIC is inside a pod
    res = resolve(_host(cni0, podbr, on_bridge, ptp, test_nic, nic_peer, moved_peer))
    assert res.excluded["cni0"] == "known overlay/CNI device (CNI bridge plugin)"
    assert res.excluded["podbr"] == "CNI bridge"
    assert res.excluded["h1a2b3c"] == res.excluded["veth1234abcd"] == "pod veth"
    assert {d.ifname for d in res.devices} == {"nic-c", "nic-c-p", "nic-d-p"}


def test_exact_name_in_a_network_overrides_exclusion_but_a_glob_does_not() -> None:
    cni0 = Link(index=20, ifname="cni0", kind="bridge")
    by_glob = binding.NetworkSelector(name="g", interfaces=("cni*",))
    assert resolve(_host(cni0), [by_glob]).devices == ()
    exact = binding.NetworkSelector(name="e", interfaces=("cni0",))
    res = resolve(_host(cni0), [exact])
    assert [(d.ifname, d.network) for d in res.devices] == [("cni0", "e")]


# --- binding ----------------------------------------------------------------------------------

ATTR = "multinetwork.networking.k8s.io/podNetwork"


def test_exact_and_glob_selection_sets_the_pod_network_attribute() -> None:
    links = [veth(30, "data-a"), veth(31, "data-b"), veth(32, "mgmt0")]
    nets = [
        binding.NetworkSelector(name="data", interfaces=("data-*",)),
        binding.NetworkSelector(name="mgmt", interfaces=("mgmt0",)),
    ]
    res = resolve(_host(*links), nets)
    assert {d.ifname: d.attributes.get(ATTR) for d in res.devices} == {
        "data-a": "data",
        "data-b": "data",
        "mgmt0": "mgmt",
    }
    assert res.conflicts == ()


def test_glob_is_case_sensitive_and_anchored() -> None:
    net = binding.NetworkSelector(name="n", interfaces=("eth[12]",))
    assert net.selects("eth1") and not net.selects("ETH1") and not net.selects("eth10")


def test_a_device_selected_by_two_networks_is_bound_to_neither_and_reported() -> None:
    links = [veth(30, "data-a"), veth(31, "data-b")]
    nets = [
        binding.NetworkSelector(name="blue", interfaces=("data-*",)),
        binding.NetworkSelector(name="red", interfaces=("data-a",)),
    ]
    res = resolve(_host(*links), nets)
    attrs = {d.ifname: d.attributes.get(ATTR) for d in res.devices}
    assert attrs == {"data-a": None, "data-b": "blue"}
    assert res.conflicts == (
        binding.DeviceConflict(device="data-a", ifname="data-a", networks=("blue", "red")),
    )


def test_macvlan_parent_is_shareable_with_bounded_capacity_and_host_device_is_not() -> None:
    links = [nic(), veth(30, "hd0")]
    nets = [
        binding.NetworkSelector(
            name="mv", interfaces=("ens1f1",), mode="macvlan", max_interfaces=16
        ),
        binding.NetworkSelector(name="hd", interfaces=("hd0",)),
    ]
    res = resolve(_host(*links), nets)
    parent, whole = (next(d for d in res.devices if d.ifname == n) for n in ("ens1f1", "hd0"))
    assert parent.shareable and parent.network == "mv"
    assert parent.capacity == {
        "multinet.dev/interfaces": Capacity(value=16, default=1, minimum=1, maximum=16)
    }
    assert not whole.shareable and whole.capacity == {}


def test_unselected_devices_are_still_advertised_without_the_attribute() -> None:
    res = resolve(_host(veth(30, "spare0")))
    assert [(d.name, d.network, ATTR in d.attributes) for d in res.devices] == [
        ("spare0", None, False)
    ]


# --- which networks bind ------------------------------------------------------------------


def _pnw(
    name: str = "blue",
    *,
    enabled: bool = True,
    ready: str | None = "True",
    provider: str = "multinet.dev",
    params: object = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, object] = {"name": name, "uid": "u-" + name, "generation": 1}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body: dict[str, object] = {
        "metadata": meta,
        "spec": {
            "enabled": enabled,
            "provider": provider,
            "parameters": params
            if params is not None
            else {"interfaces": {"names": ["eth1", "data*"]}, "mode": "macvlan"},
        },
    }
    if ready is not None:
        body["status"] = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": "Checked",
                    "message": "",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    return body


def test_a_ready_enabled_network_of_ours_binds_with_its_names_and_mode() -> None:
    verdict = networks.judge(_pnw())
    assert verdict is not None and verdict.reason == ""
    assert verdict.selector == binding.NetworkSelector(
        name="blue", interfaces=("eth1", "data*"), mode="macvlan", shared=True
    )


def test_networks_that_do_not_bind_say_why() -> None:
    cases = {
        "disabled": _pnw(enabled=False),
        "not Ready": _pnw(ready="False"),
        "being deleted": _pnw(deleting=True),
    }
    for reason, body in cases.items():
        verdict = networks.judge(body)
        assert verdict is not None and verdict.selector is None and verdict.reason == reason
    assert networks.judge(_pnw(ready=None)).reason == "not Ready"  # type: ignore[union-attr]
    bad = networks.judge(_pnw(params={"interfaces": {"names": []}}))
    assert bad is not None and bad.selector is None
    assert bad.reason.startswith("invalid parameters: ") and "interfaces.names" in bad.reason


def test_networks_of_other_providers_are_ignored() -> None:
    assert networks.judge(_pnw(provider="other.example.com")) is None


def test_a_device_away_in_a_pod_stays_with_its_last_host_facts() -> None:
    eth1 = nic(5, "eth1", master=7)
    eth2 = nic(6, "eth2", hw=replace(NIC_HW, pci_address="0000:3b:00.2"))
    on_host = HostSnapshot(links=(eth1, eth2))
    name = naming.assign_names(on_host.links)[5]
    snap, seen = away.with_away_devices(on_host, {}, set(), {})
    assert snap == on_host and seen[name] == eth1
    moved = HostSnapshot(links=(eth2,))
    snap, seen = away.with_away_devices(moved, seen, {name}, {})
    (kept,) = (link for link in snap.links if link.ifname == "eth1")
    assert kept == replace(eth1, index=-1, master=None)  # facts kept, topology dropped
    assert name in seen
    snap, seen = away.with_away_devices(moved, seen, set(), {})  # released: no longer kept
    assert snap == moved and name not in seen


def test_an_away_device_is_rebuilt_from_the_record_after_a_restart() -> None:
    recorded = nic(5, "eth1")
    name = naming.assign_names((recorded,))[5]
    snap, seen = away.with_away_devices(HostSnapshot(links=()), {}, {name}, {name: recorded})
    assert snap.links == (replace(recorded, index=-1),) and seen == {name: recorded}
