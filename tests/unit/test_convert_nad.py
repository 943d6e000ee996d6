"""`multinet convert-nad`: Multus NADs and the workloads using them in, PodNetworks and
ResourceClaimTemplates out, through the real CLI entry (`multinet.cli.main`).

Cases: each example in docs/examples/nad converted, its PodNetwork parameters and claim configs
compared exactly and validated again with multinet's own models; the <FILL-IN> warning for a
bridge; what stays `mode: cni` and the note saying why; default-route through the network's
gateway or another; a tuning MAC reaching the claims; stdin and kubectl List input; every error
exits 1 with nothing on stdout and a message naming the document and the field; `--help`; the
README's worked example is exactly what the command prints.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from manifests import REPO

from multinet import cli
from multinet.api import claimconfig, parameters, podnetwork

EXAMPLES = REPO / "docs" / "examples" / "nad"
NAD_API = "k8s.cni.cncf.io/v1"
ANNOTATION = "k8s.v1.cni.cncf.io/networks"
PREFIX = "multinet convert-nad: "

Obj = dict[str, Any]


def run(capsys: pytest.CaptureFixture[str], arg: str) -> tuple[int, list[Obj], str]:
    """Exit status, the documents printed on stdout, stderr."""
    status = cli.main(["convert-nad", arg])
    out = capsys.readouterr()
    return status, [d for d in yaml.safe_load_all(out.out) if d is not None], out.err


def kinds(docs: list[Obj], kind: str) -> dict[str, Obj]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def params_of(docs: list[Obj]) -> dict[str, Obj]:
    return {name: d["spec"]["parameters"] for name, d in kinds(docs, "PodNetwork").items()}


def claim_configs(docs: list[Obj]) -> dict[str, dict[str, Obj]]:
    """Template name -> request -> (deviceClassName, parameters) as one dict."""
    out: dict[str, dict[str, Obj]] = {}
    for name, doc in kinds(docs, "ResourceClaimTemplate").items():
        devices = doc["spec"]["spec"]["devices"]
        configs = {c["requests"][0]: c["opaque"] for c in devices["config"]}
        assert all(o["driver"] == "multinet.dev" for o in configs.values())
        out[name] = {
            r["name"]: {
                "class": r["exactly"]["deviceClassName"],
                **configs[r["name"]]["parameters"],
            }
            for r in devices["requests"]
        }
    return out


def nad(name: str, config: Obj | str, namespace: str | None = None) -> Obj:
    meta: Obj = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    text = config if isinstance(config, str) else json.dumps(config)
    return {
        "apiVersion": NAD_API,
        "kind": "NetworkAttachmentDefinition",
        "metadata": meta,
        "spec": {"config": text},
    }


def pod(name: str, networks: str | list[Obj], namespace: str | None = None) -> Obj:
    value = networks if isinstance(networks, str) else json.dumps(networks)
    meta: Obj = {"name": name, "annotations": {ANNOTATION: value}}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def macvlan(**over: Any) -> Obj:
    config: Obj = {"cniVersion": "0.3.1", "name": "n", "type": "macvlan", "master": "eth1"}
    config.update(over)
    return config


def write(tmp_path: Path, *docs: Obj) -> str:
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


# --- the examples ----------------------------------------------------------------------------


def test_macvlan_whereabouts_example(capsys: pytest.CaptureFixture[str]) -> None:
    status, docs, err = run(capsys, str(EXAMPLES / "macvlan-whereabouts.yaml"))
    assert status == 0
    assert params_of(docs) == {
        "apps-macvlan-data": {
            "interfaces": {"names": ["eth1"]},
            "mode": "macvlan",
            "macvlanMode": "bridge",
            "mtu": 1500,
            "ipam": {
                "type": "pool",
                "subnet": "198.51.100.0/24",
                "rangeStart": "198.51.100.20",
                "rangeEnd": "198.51.100.200",
                "exclude": ["198.51.100.64/28"],
                "gateway": "198.51.100.1",
            },
            # CNI routes a route without gw through the IPAM's gateway
            "routes": [{"destination": "203.0.113.0/24", "gateway": "198.51.100.1"}],
        }
    }
    assert claim_configs(docs) == {
        "web-networks": {
            "data0": {
                "class": "apps-macvlan-data",
                "interfaceName": "data0",
                "addresses": ["198.51.100.50/24"],
            }
        }
    }
    assert kinds(docs, "ResourceClaimTemplate")["web-networks"]["metadata"]["namespace"] == "apps"
    assert err == (
        f"{PREFIX}note: NetworkAttachmentDefinition apps/macvlan-data (document 1): "
        "spec.config.ipam: kubernetes dropped: whereabouts' own storage and tuning; multinet "
        "reserves addresses as IPReservation objects, unique across all PodNetworks\n"
    )


def test_bridge_example_stays_a_cni_chain_and_warns_to_fill_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, docs, err = run(capsys, str(EXAMPLES / "bridge-host-local-tuning.yaml"))
    assert status == 0
    source = yaml.safe_load_all((EXAMPLES / "bridge-host-local-tuning.yaml").read_text())
    config = json.loads(next(iter(source))["spec"]["config"])
    assert params_of(docs) == {
        "lab-lab-bridge": {
            "interfaces": {"names": ["<FILL-IN>"]},
            "mode": "cni",
            "cni": {"config": config},  # the NAD's conflist, as an object, untouched
        }
    }
    assert claim_configs(docs) == {
        "lab-client-networks": {"lab0": {"class": "lab-lab-bridge", "interfaceName": "lab0"}}
    }
    assert err == (
        f"{PREFIX}warning: NetworkAttachmentDefinition lab/lab-bridge (document 1): PodNetwork "
        "lab-lab-bridge has interfaces.names: [<FILL-IN>]: the NAD's config names no host "
        "interface (no master or device), but multinet allocates a host NIC to every claim "
        "(mode cni): replace <FILL-IN> with the host interface name(s) or globs whose DRA "
        "devices the claims should allocate before applying it\n"
    )


def test_host_device_static_example(capsys: pytest.CaptureFixture[str]) -> None:
    status, docs, err = run(capsys, str(EXAMPLES / "host-device-static.yaml"))
    assert status == 0
    assert params_of(docs) == {
        "storage-direct": {  # namespace default: the NAD's own name
            "interfaces": {"names": ["eth2"]},
            "mode": "host-device",
            "ipam": {
                "type": "pool",
                "subnet": "203.0.113.0/24",
                "rangeStart": "203.0.113.10",
                "rangeEnd": "203.0.113.10",
                "gateway": "203.0.113.1",
            },
            "routes": [{"destination": "198.51.100.0/24", "gateway": "203.0.113.254"}],
        }
    }
    # default-route names the network's gateway: defaultRoute alone, no extra route
    assert claim_configs(docs) == {
        "storage-client-networks": {
            "net1": {
                "class": "storage-direct",
                "interfaceName": "net1",
                "mac": "02:00:5e:10:00:01",
                "defaultRoute": True,
            }
        }
    }
    assert "spec.config.ipam.addresses: each static address becomes a pool of that one" in err


def test_dual_stack_example(capsys: pytest.CaptureFixture[str]) -> None:
    status, docs, err = run(capsys, str(EXAMPLES / "macvlan-host-local-dual-stack.yaml"))
    assert (status, err) == (0, "")
    assert params_of(docs) == {
        "edge": {
            "interfaces": {"names": ["ens6"]},
            "mode": "macvlan",
            "macvlanMode": "private",
            "mtu": 9000,
            "ipam": {
                "type": "pool",
                "subnets": [
                    {
                        "subnet": "198.18.100.0/24",
                        "rangeStart": "198.18.100.100",
                        "rangeEnd": "198.18.100.199",
                        "gateway": "198.18.100.254",
                    },
                    {
                        "subnet": "2001:db8:18::/64",
                        "rangeStart": "2001:db8:18::100",
                        "rangeEnd": "2001:db8:18::1ff",
                        "gateway": "2001:db8:18::1",  # host-local's default: the first address
                    },
                ],
            },
            "routes": [
                {"destination": "203.0.113.0/24", "gateway": "198.18.100.254"},
                {"destination": "2001:db8:ffff::/48", "gateway": "2001:db8:18::fffe"},
            ],
            "sysctls": {
                "net.ipv4.conf.net1.arp_notify": "1",
                "net.ipv6.conf.net1.accept_ra": "0",
            },
        }
    }
    assert claim_configs(docs) == {
        "edge-router-networks": {"net1": {"class": "edge", "interfaceName": "net1"}}
    }
    template = kinds(docs, "ResourceClaimTemplate")["edge-router-networks"]
    assert "namespace" not in template["metadata"]  # the StatefulSet has none either


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_printed_object_is_valid(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, docs, _ = run(capsys, str(EXAMPLES / example))
    assert status == 0
    networks = kinds(docs, "PodNetwork")
    assert networks
    for doc in networks.values():
        assert doc["apiVersion"] == "multinetwork.networking.k8s.io/v1alpha1"
        pnw = podnetwork.parse(doc)
        assert pnw.ours and pnw.spec.enabled
        parameters.parse(pnw.spec.parameters)
    for template in kinds(docs, "ResourceClaimTemplate").values():
        assert template["apiVersion"] == "resource.k8s.io/v1"
        for request in template["spec"]["spec"]["devices"]["requests"]:
            assert request["exactly"]["deviceClassName"] in networks
        for entry in template["spec"]["spec"]["devices"]["config"]:
            claimconfig.parse(entry["opaque"]["parameters"])


def test_the_comment_says_what_to_add_to_the_pod_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["convert-nad", str(EXAMPLES / "macvlan-whereabouts.yaml")]) == 0
    out = capsys.readouterr().out
    assert (
        "# For Deployment apps/web (document 2): replaces its k8s.v1.cni.cncf.io/networks "
        "annotation; remove that\n"
        "# and add to spec.template.spec:\n"
        "#   resourceClaims:\n"
        "#     - name: networks\n"
        "#       resourceClaimTemplateName: web-networks\n"
        "# and to container web:\n"
        "#   resources:\n"
        "#     claims: [{name: networks}]\n"
        "apiVersion: resource.k8s.io/v1\n"
        "kind: ResourceClaimTemplate\n"
    ) in out


# --- mapping rules -----------------------------------------------------------------------------


def test_stdin_and_a_kubectl_list_in_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [
        nad("mv", macvlan(ipam={"type": "host-local", "subnet": "198.51.100.0/24"}), "team"),
        pod("p", "mv", "team"),
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"kind": "List", "items": items})))
    status, docs, err = run(capsys, "-")
    assert (status, err) == (0, "")
    assert params_of(docs)["team-mv"]["ipam"] == {
        "type": "pool",
        "subnet": "198.51.100.0/24",
        "gateway": "198.51.100.1",  # host-local's default
    }
    assert claim_configs(docs) == {
        "p-networks": {"net1": {"class": "team-mv", "interfaceName": "net1"}}
    }


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            {
                "cniVersion": "1.0.0",
                "name": "n",
                "plugins": [
                    {"type": "macvlan", "master": "eth1"},
                    {"type": "bandwidth", "capabilities": {"bandwidth": True}},
                ],
            },
            'spec.config.plugins[1] (type "bandwidth") has no multinet equivalent',
        ),
        (
            {
                "cniVersion": "1.0.0",
                "name": "n",
                "plugins": [
                    {"type": "macvlan", "master": "eth1"},
                    {"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}},
                ],
            },
            "spec.config.plugins[1].sysctl[net.ipv4.conf.IFNAME.arp_notify] uses the IFNAME "
            "placeholder; multinet's sysctls name the pod interface",
        ),
        (
            macvlan(ipam={"type": "dhcp"}),
            'spec.config.ipam.type "dhcp" has no multinet equivalent (multinet hands out '
            "addresses from a pool, or none)",
        ),
        (
            macvlan(promiscMode=True),
            "spec.config.promiscMode has no multinet equivalent",
        ),
        (
            macvlan(
                ipam={
                    "type": "static",
                    "addresses": [{"address": "198.51.100.5/24"}, {"address": "198.51.100.6/24"}],
                }
            ),
            "spec.config.ipam.addresses: static IPAM gives every pod all of its addresses, a "
            "multinet pool one address per family",
        ),
    ],
)
def test_what_has_no_exact_equivalent_stays_a_cni_chain(
    config: Obj, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, docs, err = run(capsys, write(tmp_path, nad("x", config)))
    assert status == 0
    assert params_of(docs) == {
        "x": {"interfaces": {"names": ["eth1"]}, "mode": "cni", "cni": {"config": config}}
    }
    note = "note: NetworkAttachmentDefinition x (document 1): kept as mode: cni"
    assert err == f"{PREFIX}{note}: {reason}\n"


def test_default_route_through_another_gateway_adds_the_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ipam = {
        "type": "whereabouts",
        "range": "198.51.100.0/24",
        "gateway": "198.51.100.1",
        "routes": [{"dst": "203.0.113.0/24"}, {"dst": "0.0.0.0/0"}],
    }
    entry = {"name": "x", "interface": "data0", "default-route": ["198.51.100.254"]}
    status, docs, _ = run(capsys, write(tmp_path, nad("x", macvlan(ipam=ipam)), pod("p", [entry])))
    assert status == 0
    # a claim's routes replace the network's: its own, with the default route via the new gateway
    assert claim_configs(docs)["p-networks"]["data0"] == {
        "class": "x",
        "interfaceName": "data0",
        "defaultRoute": True,
        "routes": [
            {"destination": "203.0.113.0/24", "gateway": "198.51.100.1"},
            {"destination": "0.0.0.0/0", "gateway": "198.51.100.254"},
        ],
    }


def test_a_tuning_mac_and_capabilities_reach_the_claims(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "cniVersion": "1.0.0",
        "name": "n",
        "plugins": [
            {"type": "macvlan", "master": "eth1", "capabilities": {"ips": True}},
            {"type": "tuning", "mac": "02:00:00:00:00:07", "sysctl": {"net.ipv4.ip_forward": "1"}},
        ],
    }
    entries = "default/x@in0, x"
    status, docs, err = run(capsys, write(tmp_path, nad("x", config), pod("p", entries)))
    assert status == 0
    assert params_of(docs)["x"]["sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert claim_configs(docs)["p-networks"] == {
        "in0": {"class": "x", "interfaceName": "in0", "mac": "02:00:00:00:00:07"},
        "net2": {"class": "x", "interfaceName": "net2", "mac": "02:00:00:00:00:07"},
    }
    assert "spec.config.plugins[1].mac: Multus gave every pod of the network this MAC" in err


def test_cni_mode_default_route_without_a_known_gateway_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {"cniVersion": "0.3.1", "name": "n", "type": "ipvlan", "master": "eth3"}
    entry = {"name": "x", "default-route": ["203.0.113.1"]}
    status, docs, err = run(capsys, write(tmp_path, nad("x", config), pod("p", [entry])))
    assert status == 0
    assert params_of(docs)["x"]["interfaces"] == {"names": ["eth3"]}  # the plugin's master
    assert claim_configs(docs)["p-networks"]["net1"]["defaultRoute"] is True
    assert err == (
        f"{PREFIX}warning: Pod p (document 2): metadata.annotations"
        f'["{ANNOTATION}"][0].default-route: the CNI config of NetworkAttachmentDefinition x '
        "(document 1) names no gateway; in mode cni multinet's default route goes through the "
        "gateway of the CNI result, which must then be 203.0.113.1\n"
    )


# --- errors --------------------------------------------------------------------------------

BRIDGE = {"cniVersion": "0.3.1", "name": "b", "type": "bridge", "bridge": "br0"}
WHERE = f'metadata.annotations["{ANNOTATION}"]'
POOL = macvlan(ipam={"type": "host-local", "subnet": "198.51.100.0/24"})

ERRORS: list[tuple[str, list[Obj] | str, str]] = [
    (
        "bad YAML",
        "kind: [unclosed\n",
        "is not valid YAML or JSON: expected ',' or ']', but got '<stream end>' at line 2, "
        "column 1 (while parsing a flow sequence at line 1)",
    ),
    (
        "not a NAD nor a workload",
        [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}],
        "error: ConfigMap cm (document 1): is neither a NetworkAttachmentDefinition nor a "
        "workload with a pod template (Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, "
        "Job, CronJob); leave it out of the input",
    ),
    (
        "not an object",
        [nad("x", BRIDGE), ["a"]],  # type: ignore[list-item]
        "error: document 2 item 1: is not a Kubernetes object",
    ),
    (
        "no spec.config",
        [{**nad("x", BRIDGE, "ns"), "spec": {}}],
        "error: NetworkAttachmentDefinition ns/x (document 1): spec.config: is required",
    ),
    (
        "spec.config not JSON",
        [nad("x", '{"type": bridge}')],
        "error: NetworkAttachmentDefinition x (document 1): spec.config: is not valid JSON: "
        "Expecting value: line 1 column 10 (char 9)",
    ),
    (
        "a NAD of another apiVersion",
        [{**nad("x", BRIDGE), "apiVersion": "k8s.cni.cncf.io/v2"}],
        "apiVersion: must be k8s.cni.cncf.io/v1, got",
    ),
    (
        "host-device by PCI address",
        [nad("hd", {"cniVersion": "0.3.1", "type": "host-device", "pciBusID": "0000:3b:00.1"})],
        "error: NetworkAttachmentDefinition hd (document 1): spec.config.pciBusID: multinet "
        "selects host interfaces by name, not by PCI address, MAC or sysfs path: replace "
        'pciBusID with "device": "<the interface\'s name on the nodes>" and run again',
    ),
    (
        "a value multinet rejects, named by its NAD field (the README's example)",
        [nad("x", macvlan(mtu=20), "apps")],
        "error: NetworkAttachmentDefinition apps/x (document 1): spec.config.mtu: must be "
        "between 68 and 65535, got 20 (PodNetwork apps-x: parameters.mtu)",
    ),
    (
        "a range of a NAD",
        [
            nad(
                "x",
                macvlan(
                    ipam={
                        "type": "whereabouts",
                        "range": "198.51.100.0/24",
                        "range_start": "203.0.113.5",
                    }
                ),
            )
        ],
        "spec.config.ipam.range_start: 203.0.113.5 is outside subnet 198.51.100.0/24 "
        "(PodNetwork x: parameters.ipam.rangeStart)",
    ),
    (
        "a CNI chain multinet cannot run",
        [nad("x", {**BRIDGE, "cniVersion": "0.2.0"})],
        'spec.config.cniVersion: must be one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0, got "0.2.0" '
        "(PodNetwork x: parameters.cni.config.cniVersion)",
    ),
    (
        "two NADs, one PodNetwork name",
        [nad("a-b", BRIDGE), nad("b", BRIDGE, "a")],
        "error: NetworkAttachmentDefinition a/b (document 2): its PodNetwork would be named a-b, "
        "as is the one of NetworkAttachmentDefinition a-b (document 1)",
    ),
    (
        "an address outside the pool, named by its annotation field",
        [nad("x", POOL), pod("p", [{"name": "x", "ips": ["203.0.113.5/24"]}])],
        f"error: Pod p (document 2): {WHERE}[0].ips[0]: 203.0.113.5/24 is outside subnet "
        "198.51.100.0/24 of the PodNetwork (claim config of request net1 in "
        "ResourceClaimTemplate p-networks: config[0].addresses[0])",
    ),
    (
        "a NAD not in the input",
        [nad("x", POOL), pod("p", "x, other/y")],
        f"error: Pod p (document 2): {WHERE}[1]: refers to NetworkAttachmentDefinition other/y, "
        "which is not in the input",
    ),
    (
        "two default routes",
        [
            nad("x", POOL),
            pod(
                "p",
                [
                    {"name": "x", "default-route": ["198.51.100.1"]},
                    {"name": "x", "default-route": ["198.51.100.1"]},
                ],
            ),
        ],
        f"{WHERE}[1]: default-route is also set on {WHERE}[0]; a pod has one default route",
    ),
    (
        "an annotation field multinet has not",
        [nad("x", POOL), pod("p", [{"name": "x", "portMappings": []}])],
        f"{WHERE}[0].portMappings: has no multinet equivalent",
    ),
    (
        "a malformed comma form",
        [nad("x", POOL), pod("p", "a/b/x")],
        f"{WHERE}[0]: must be name, namespace/name, name@interface or namespace/name@interface, "
        'got "a/b/x"',
    ),
    (
        "a default-route gateway a CNI chain does not have",
        [
            nad("x", {**BRIDGE, "ipam": {"type": "host-local", "subnet": "203.0.113.0/24"}}),
            pod("p", [{"name": "x", "default-route": ["203.0.113.9"]}]),
        ],
        f"{WHERE}[0].default-route: 203.0.113.9 is not the gateway the NAD's CNI IPAM names "
        "(203.0.113.1)",
    ),
    (
        "a sysctl of another interface",
        [
            nad(
                "x",
                {
                    "cniVersion": "1.0.0",
                    "name": "n",
                    "plugins": [
                        {"type": "macvlan", "master": "eth1"},
                        {"type": "tuning", "sysctl": {"net.ipv4.conf.net1.arp_notify": "1"}},
                    ],
                },
            ),
            pod("p", "x@data0"),
        ],
        "the pod interface is data0, but NetworkAttachmentDefinition x (document 1) sets sysctl "
        "net.ipv4.conf.net1.arp_notify (spec.config.plugins[1].sysctl[net.ipv4.conf.net1."
        "arp_notify]) of interface net1",
    ),
]


@pytest.mark.parametrize(("case", "docs", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_exit_1_naming_document_and_field(
    case: str,
    docs: list[Obj] | str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if isinstance(docs, str):
        path = tmp_path / "in.yaml"
        path.write_text(docs)
        arg = str(path)
    else:
        arg = write(tmp_path, *docs)
    status = cli.main(["convert-nad", arg])
    out = capsys.readouterr()
    assert status == 1
    assert out.out == ""
    assert message in out.err
    assert all(line.startswith(f"{PREFIX}error: ") for line in out.err.splitlines())


def test_every_error_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [nad("a", macvlan(mtu=20)), nad("b", "[1]"), pod("p", "a, b")]
    status = cli.main(["convert-nad", write(tmp_path, *docs)])
    err = capsys.readouterr().err
    assert status == 1
    assert [line.split(": ")[2] for line in err.splitlines()] == [
        "NetworkAttachmentDefinition a (document 1)",
        "NetworkAttachmentDefinition b (document 2)",
    ]  # the pod's uses of failed NADs are not reported again


def test_an_unreadable_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["convert-nad", str(tmp_path / "missing.yaml")]) == 1
    assert capsys.readouterr().err.startswith(f"{PREFIX}error: cannot read ")


def test_help_describes_input_mapping_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert-nad", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in (
        "FILE|-",
        "NetworkAttachmentDefinitions",
        ANNOTATION,
        "<namespace>-<name>",
        "ResourceClaimTemplate",
        "mode: macvlan",
        "mode: host-device",
        "pciBusID",
        "ipam.subnets",
        "tuning sysctl",
        "mode: cni",
        "<FILL-IN>",
        "default-route -> defaultRoute",
        "exit status: 0",
    ):
        assert phrase in text, phrase


def test_the_readme_example_is_what_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Migrating from Multus: multinet convert-nad\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    example = EXAMPLES / "macvlan-whereabouts.yaml"
    blocks = re.findall(r"```(?:yaml|sh|)\n(.*?)```", section, re.S)
    command, stderr, stdout = blocks[1:4]
    assert blocks[0] == example.read_text()
    assert command == f"multinet convert-nad {example.relative_to(REPO)} > multinet.yaml\n"
    assert cli.main(["convert-nad", str(example)]) == 0
    out = capsys.readouterr()
    assert (out.out, out.err) == (stdout, stderr)
