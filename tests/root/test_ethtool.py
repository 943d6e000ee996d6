"""Offload features through the ethtool netlink family, on a veth end inside a throwaway netns,
checked with `ip netns exec NS ethtool -k IF` (what a user looks at), not with our own code.

The veth end inside the namespace has the same name as its peer on the host, so a request that
landed in the host namespace would change the host's interface: each change also checks that the
host's interfaces (that peer, lo and the uplink) show the same `ethtool -k` as before, and that
the calling thread is back in its own namespace.

Cases: features() is what `ethtool -k` shows (values, [fixed], [requested ...], and the legacy
headings' members); tx-checksumming off and on again; kernel and short names (rx-gro, gro); an
unknown name, a fixed feature (off on veth, on on lo) and opposite values of one feature are
refused before anything is sent; a value the kernel accepts but does not apply (TSO without
scatter-gather) is an error naming the dependency; a missing interface; the name syntax check.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from netfixtures import lab, sh

from multinet.api.ethtoolnames import check_feature_name
from multinet.netlink import netns
from multinet.netlink.ethtool import EthtoolError, Feature, features, members, set_features

pytestmark = pytest.mark.root

# Legacy names that `ethtool -k` prints in place of their one kernel feature.
SHOWN_AS = {
    "rx-checksumming": "rx-checksum",
    "generic-segmentation-offload": "tx-generic-segmentation",
    "generic-receive-offload": "rx-gro",
    "large-receive-offload": "rx-lro",
    "rx-vlan-offload": "rx-vlan-hw-parse",
    "tx-vlan-offload": "tx-vlan-hw-insert",
    "ntuple-filters": "rx-ntuple-filter",
    "receive-hashing": "rx-hashing",
}
TX_CSUM = (
    "tx-checksum-ipv4",
    "tx-checksum-ip-generic",
    "tx-checksum-ipv6",
    "tx-checksum-fcoe-crc",
    "tx-checksum-sctp",
)


@dataclass
class EthtoolView:
    """`ethtool -k`: each feature line (legacy single-feature lines under their kernel name) as
    (on, suffix), and each legacy heading with its value and the features listed under it."""

    lines: dict[str, tuple[bool, str]]
    headings: dict[str, tuple[bool, list[str]]]


def ethtool_k(ifname: str, ns: str | None = None) -> EthtoolView:
    out = sh(f"ip netns exec {ns} ethtool -k {ifname}" if ns else f"ethtool -k {ifname}")
    lines = out.splitlines()[1:]  # after "Features for IF:"
    view = EthtoolView({}, {})
    heading = ""
    for i, line in enumerate(lines):
        name, _, rest = line.strip().partition(": ")
        value, _, suffix = rest.partition(" ")
        if i + 1 < len(lines) and lines[i + 1].startswith("\t") and not line.startswith("\t"):
            heading = name  # a legacy heading: its features follow, indented
            view.headings[name] = (value == "on", [])
            continue
        if line.startswith("\t"):
            view.headings[heading][1].append(name)
        view.lines[SHOWN_AS.get(name, name)] = (value == "on", suffix)
    return view


def shown(feature: Feature) -> tuple[bool, str]:
    """How `ethtool -k` shows a feature."""
    if not feature.changeable:
        return feature.active, "[fixed]"
    if feature.wanted != feature.active:
        return feature.active, f"[requested {'on' if feature.wanted else 'off'}]"
    return feature.active, ""


@dataclass
class Pod:
    ns: str
    ifname: str  # inside `ns`; the host has an interface of this name too (the veth peer)
    fd: int


@pytest.fixture
def pod() -> Iterator[Pod]:
    with lab() as it:
        ns = it.new_netns()
        host_end = it.new_nic()
        pod_end = it.links[-1]
        sh(f"ip link set dev {pod_end} netns {ns}")
        sh(f"ip -n {ns} link set dev {pod_end} name {host_end}")
        with netns.opened(it.netns_path(ns)) as fd:
            yield Pod(ns, host_end, fd)


def host_interfaces(pod: Pod) -> list[str]:
    routes = json.loads(sh("ip -j route show default") or "[]")
    return sorted({"lo", pod.ifname, *(r["dev"] for r in routes if "dev" in r)})


def host_view(pod: Pod) -> dict[str, dict[str, tuple[bool, str]]]:
    return {name: ethtool_k(name).lines for name in host_interfaces(pod)}


def thread_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def test_features_are_what_ethtool_shows(pod: Pod) -> None:
    for ifname in (pod.ifname, "lo"):
        mine = features(pod.fd, ifname)
        theirs = ethtool_k(ifname, pod.ns)
        assert {name: shown(f) for name, f in mine.items()} == theirs.lines, ifname
        for heading, (on, listed) in theirs.headings.items():
            assert members(heading, mine) == tuple(listed), heading
            assert on == any(mine[m].active for m in listed), heading
        for legacy, kernel in SHOWN_AS.items():
            assert members(legacy, mine) == (kernel,)
    veth = features(pod.fd, pod.ifname)
    assert veth["tx-checksum-ip-generic"] == Feature(active=True, changeable=True, wanted=True)
    assert not veth["tx-checksum-ipv4"].changeable
    assert not veth["rx-lro"].changeable and not veth["rx-lro"].active


def test_tx_checksumming_off_and_on(pod: Pod) -> None:
    host_before, here = host_view(pod), thread_netns()
    assert ethtool_k(pod.ifname, pod.ns).headings["tx-checksumming"][0] is True

    assert set_features(pod.fd, pod.ifname, {"tx-checksumming": False}) == dict.fromkeys(
        TX_CSUM, False
    )
    off = ethtool_k(pod.ifname, pod.ns)
    assert off.headings["tx-checksumming"] == (False, list(TX_CSUM))
    assert off.lines["tx-checksum-ip-generic"] == (False, "")
    assert off.lines["tx-checksum-sctp"] == (False, "")

    assert set_features(pod.fd, pod.ifname, {"tx-checksumming": True}) == {
        "tx-checksum-ipv4": False,  # fixed off on veth: "on" is any of them, as ethtool shows
        "tx-checksum-ip-generic": True,
        "tx-checksum-ipv6": False,
        "tx-checksum-fcoe-crc": False,
        "tx-checksum-sctp": True,
    }
    on = ethtool_k(pod.ifname, pod.ns)
    assert on.headings["tx-checksumming"][0] is True
    assert on.lines["tx-checksum-ip-generic"] == (True, "")
    assert on.lines["tx-checksum-ipv4"] == (False, "[fixed]")

    assert thread_netns() == here
    assert host_view(pod) == host_before


def test_kernel_and_short_names(pod: Pod) -> None:
    host_before = host_view(pod)
    result = set_features(pod.fd, pod.ifname, {"rx-gro": True, "tx-checksum-ip-generic": False})
    assert result == {"rx-gro": True, "tx-checksum-ip-generic": False}
    view = ethtool_k(pod.ifname, pod.ns).lines
    assert view["rx-gro"] == (True, "") and view["tx-checksum-ip-generic"] == (False, "")

    assert set_features(pod.fd, pod.ifname, {"gro": False}) == {"rx-gro": False}
    assert ethtool_k(pod.ifname, pod.ns).lines["rx-gro"] == (False, "")
    assert host_view(pod) == host_before


def test_an_unknown_name_is_refused_with_the_closest_known(pod: Pod) -> None:
    before = ethtool_k(pod.ifname, pod.ns)
    with pytest.raises(EthtoolError) as caught:
        set_features(pod.fd, pod.ifname, {"rx-gro": True, "tx-checksuming": False})
    text = str(caught.value)
    assert caught.value.errno == errno.ENOENT
    assert f"ethtool feature 'tx-checksuming' is not known to the kernel for {pod.ifname}" in text
    assert "known: " in text and "rx-gro" in text
    assert text.endswith("(closest: tx-checksumming)")
    assert ethtool_k(pod.ifname, pod.ns) == before  # nothing was sent, rx-gro included

    with pytest.raises(EthtoolError, match="'TX' must be lowercase"):
        set_features(pod.fd, pod.ifname, {"TX": False})


def test_a_fixed_feature_is_refused(pod: Pod) -> None:
    before = ethtool_k(pod.ifname, pod.ns)
    fixed_off = f"ethtool feature 'rx-lro' of {pod.ifname} is fixed off and cannot be changed"
    with pytest.raises(EthtoolError, match=fixed_off) as caught:
        set_features(pod.fd, pod.ifname, {"tx-checksumming": False, "rx-lro": True})
    assert caught.value.errno == errno.EOPNOTSUPP
    with pytest.raises(EthtoolError, match=r"'rx-lro' \(part of 'large-receive-offload'\)"):
        set_features(pod.fd, pod.ifname, {"large-receive-offload": True})
    assert ethtool_k(pod.ifname, pod.ns) == before  # tx-checksumming was not sent either

    fixed_on = "ethtool feature 'rx-checksum' of lo is fixed on and cannot be changed"
    with pytest.raises(EthtoolError, match=fixed_on):
        set_features(pod.fd, "lo", {"rx-checksum": False})
    # Asking a fixed feature for the value it has is no change.
    assert set_features(pod.fd, pod.ifname, {"rx-lro": False}) == {"rx-lro": False}


def test_opposite_values_of_one_feature_are_refused(pod: Pod) -> None:
    asked = {"tx-checksumming": False, "tx-checksum-ip-generic": True}
    with pytest.raises(
        EthtoolError, match=r"'tx-checksumming' \(off\) and 'tx-checksum-ip-generic'"
    ):
        set_features(pod.fd, pod.ifname, asked)
    assert ethtool_k(pod.ifname, pod.ns).lines["tx-checksum-ip-generic"] == (True, "")


def test_a_value_the_kernel_does_not_apply_names_its_dependency(pod: Pod) -> None:
    assert set_features(pod.fd, pod.ifname, {"scatter-gather": False}) == {
        "tx-scatter-gather": False,
        "tx-scatter-gather-fraglist": False,
    }
    # The kernel drops TSO along with scatter-gather and keeps it wanted ("requested on").
    assert ethtool_k(pod.ifname, pod.ns).lines["tx-tcp-segmentation"] == (False, "[requested on]")
    with pytest.raises(EthtoolError) as caught:
        set_features(pod.fd, pod.ifname, {"tx-tcp-segmentation": True})
    text = str(caught.value)
    assert f"the kernel accepted but did not apply, on {pod.ifname}" in text
    assert "'tx-tcp-segmentation' is still off, not on: it needs tx-scatter-gather" in text
    assert "now tx-scatter-gather off" in text
    assert caught.value.result == {"tx-tcp-segmentation": False}
    assert ethtool_k(pod.ifname, pod.ns).lines["tx-tcp-segmentation"] == (False, "[requested on]")

    set_features(pod.fd, pod.ifname, {"sg": True})  # and TSO comes back by itself
    assert ethtool_k(pod.ifname, pod.ns).lines["tx-tcp-segmentation"] == (True, "")


def test_a_missing_interface(pod: Pod) -> None:
    with pytest.raises(EthtoolError, match="nosuch0") as caught:
        features(pod.fd, "nosuch0")
    assert caught.value.errno == errno.ENODEV
    with pytest.raises(EthtoolError):
        set_features(pod.fd, "nosuch0", {"rx-gro": True})


def test_feature_name_syntax() -> None:
    for good in ("tx-checksumming", "rx-gro", "tx-udp_tnl-segmentation", "tso", "a" * 64):
        assert check_feature_name(good) is None, good
    for bad in ("", "Tx", "-tx", "tx checksum", "a" * 65, "tx.csum", 3):
        assert check_feature_name(bad) is not None, bad
