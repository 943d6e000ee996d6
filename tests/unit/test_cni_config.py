"""The pure parts of a CNI chain: config validation, each plugin's stdin and environment, results.

Cases: a single plugin config and a conflist become a Chain (name from the caller when absent);
a table of bad configs, each with the exact messages naming the field, all problems at once;
stdin per plugin and command (name/cniVersion from the chain, prevResult where the spec puts it
and per version, runtimeConfig only for declared capabilities, the claim's device as master of
macvlan/ipvlan and as device of host-device unless the config names one); CNI_ARGS and the whole
environment; the cache file (name, exclusive create, replace, remove, a damaged file is an
error, not "no record"); results of 0.4.0 and 1.0.0 shapes as the same Outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from multinet.cni import cache
from multinet.cni.config import Chain, parse_chain, version_at_least
from multinet.cni.errors import CniError
from multinet.cni.invocation import (
    Command,
    PodRef,
    RuntimeArgs,
    invocation_problems,
    plugin_env,
    plugin_stdin,
)
from multinet.cni.result import Dns, Outcome, Route, parse_outcome
from multinet.errors import AttachError, ConfigError

BRIDGE = {
    "type": "bridge",
    "bridge": "br-t",
    "ipam": {"type": "host-local", "subnet": "198.51.100.0/24"},
}


def conflist(*plugins: Any, version: str = "1.0.0") -> dict[str, Any]:
    return {"cniVersion": version, "name": "fast", "plugins": list(plugins)}


def messages(config: Any, name: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_chain(config, name=name)
    return caught.value.errors


# -- config ----------------------------------------------------------------------------------


def test_a_single_plugin_config_is_a_chain_of_one_without_name_and_version() -> None:
    chain = parse_chain({"cniVersion": "0.4.0", "name": "wan", **BRIDGE})
    assert chain == Chain(name="wan", cni_version="0.4.0", plugins=(BRIDGE,))


def test_a_conflist_keeps_its_plugins_in_order_and_disable_check() -> None:
    tuning = {"type": "tuning", "mtu": 1400}
    chain = parse_chain({**conflist(BRIDGE, tuning), "disableCheck": "true"})
    assert [p["type"] for p in chain.plugins] == ["bridge", "tuning"]
    assert chain.disable_check
    assert parse_chain(chain.document()) == chain  # what the cache stores reads back the same


def test_the_callers_name_is_used_only_when_the_config_has_none() -> None:
    assert parse_chain({"cniVersion": "1.0.0", **BRIDGE}, name="storage").name == "storage"
    assert parse_chain(conflist(BRIDGE), name="storage").name == "fast"


def test_the_chain_does_not_share_the_callers_dicts() -> None:
    config = conflist({"type": "tuning", "sysctl": {"net.core.somaxconn": "500"}})
    chain = parse_chain(config)
    config["plugins"][0]["sysctl"]["net.core.somaxconn"] = "1"
    assert chain.plugins[0]["sysctl"] == {"net.core.somaxconn": "500"}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (["bridge"], ['cni.config: must be an object, got ["bridge"]']),
        ({"name": "x", **BRIDGE}, ["cni.config.cniVersion: is required"]),
        (
            {**conflist(BRIDGE), "cniVersion": "0.2.0"},
            [
                "cni.config.cniVersion: must be one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0, "
                'got "0.2.0"'
            ],
        ),
        ({"cniVersion": "1.0.0", **BRIDGE}, ["cni.config.name: is required"]),
        (
            {**conflist(BRIDGE), "name": "-bad name"},
            [
                "cni.config.name: must be a letter or digit followed by letters, digits, "
                """'_', '.' or '-', got "-bad name\""""
            ],
        ),
        (
            {"cniVersion": "1.0.0", "name": "n"},
            ["cni.config: needs type (one plugin) or plugins (a list of plugins)"],
        ),
        (
            {**conflist(BRIDGE), "type": "bridge"},
            [
                "cni.config: has both type (one plugin) and plugins (a list); "
                "in a conflist each plugin carries its own type"
            ],
        ),
        (conflist(), ["cni.config.plugins: must have at least 1 item"]),
        (
            {**conflist(), "plugins": {"type": "bridge"}},
            ['cni.config.plugins: must be a list, got {"type": "bridge"}'],
        ),
    ],
)
def test_bad_configs_name_the_field(config: Any, expected: list[str]) -> None:
    assert messages(config) == expected


def test_bad_plugins_name_their_index_and_field() -> None:
    config = conflist(
        BRIDGE,
        {"mtu": 1400},
        {"type": "../../bin/sh"},
        {"type": 7},
        "tuning",
        {"type": "macvlan", "ipam": {"type": "/usr/lib/cni/static"}},
        {"type": "macvlan", "ipam": "static"},
        {"type": "tuning", "capabilities": {"mac": "yes"}},
        {"type": ".."},
    )
    assert messages(config) == [
        "cni.config.plugins[1].type: is required",
        """cni.config.plugins[2].type: must be a plain file name (no '/', no '..'), """
        """got "../../bin/sh\"""",
        "cni.config.plugins[3].type: must be a string, got 7",
        'cni.config.plugins[4]: must be an object, got "tuning"',
        "cni.config.plugins[5].ipam.type: must be a plain file name (no '/', no '..'), "
        'got "/usr/lib/cni/static"',
        'cni.config.plugins[6].ipam: must be an object, got "static"',
        'cni.config.plugins[7].capabilities: must be an object of true/false, got {"mac": "yes"}',
        """cni.config.plugins[8].type: must be a plain file name (no '/', no '..'), got "..\"""",
    ]


def test_a_single_plugin_config_names_its_own_fields() -> None:
    assert messages({"cniVersion": "1.0.0", "type": "a/b", "ipam": {}}, name="n") == [
        """cni.config.type: must be a plain file name (no '/', no '..'), got "a/b\"""",
        "cni.config.ipam.type: is required",
    ]


def test_every_problem_is_reported_at_once() -> None:
    config = {"plugins": [{}], "disableCheck": "maybe"}
    assert messages(config) == [
        "cni.config.cniVersion: is required",
        "cni.config.name: is required",
        "cni.config.plugins[0].type: is required",
        'cni.config.disableCheck: must be true or false, got "maybe"',
    ]


def test_a_config_too_deep_to_serialise_is_refused() -> None:
    deep: dict[str, Any] = {}
    for _ in range(100_000):
        deep = {"x": deep}
    (message,) = messages({**conflist(BRIDGE), "args": deep})
    assert message.startswith("cni.config: must be plain JSON (RecursionError")


def test_versions_compare_by_number() -> None:
    assert version_at_least("1.0.0", "0.4.0")
    assert version_at_least("0.4.0", "0.4.0")
    assert not version_at_least("0.3.1", "0.4.0")
    assert version_at_least("0.10.0", "0.4.0")


# -- stdin -----------------------------------------------------------------------------------

PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": "/run/netns/p"}]}


def stdin(
    chain: Chain,
    index: int,
    command: Command = "ADD",
    *,
    device: str | None = "ens5",
    runtime: RuntimeArgs | None = None,
    prev: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return plugin_stdin(
        chain,
        index,
        command=command,
        device=device,
        runtime=runtime or RuntimeArgs(),
        prev_result=prev,
    )


def test_every_plugin_gets_the_chains_name_and_version_over_its_own() -> None:
    chain = parse_chain(
        conflist(BRIDGE, {"type": "tuning", "name": "other", "cniVersion": "0.1.0"})
    )
    assert stdin(chain, 0) == {**BRIDGE, "name": "fast", "cniVersion": "1.0.0"}
    assert stdin(chain, 1, prev=PREV) == {
        "type": "tuning",
        "name": "fast",
        "cniVersion": "1.0.0",
        "prevResult": PREV,
    }


@pytest.mark.parametrize(
    ("version", "command", "index", "gets_prev"),
    [
        ("1.0.0", "ADD", 0, False),  # the first plugin of an ADD has none before it
        ("1.0.0", "ADD", 1, True),
        ("0.3.1", "ADD", 1, True),  # conflists pass results along since 0.3.0
        ("1.0.0", "DEL", 0, True),  # DEL and CHECK get the cached result of the whole ADD
        ("0.4.0", "CHECK", 0, True),
        ("0.4.0", "DEL", 1, True),
        ("0.3.1", "DEL", 0, False),  # before 0.4.0, DEL had no prevResult
        ("0.3.0", "DEL", 1, False),
    ],
)
def test_prev_result_goes_where_the_spec_puts_it(
    version: str, command: Command, index: int, gets_prev: bool
) -> None:
    chain = parse_chain(conflist(BRIDGE, {"type": "tuning"}, version=version))
    assert ("prevResult" in stdin(chain, index, command, prev=PREV)) is gets_prev


def test_a_del_without_a_cached_result_has_no_prev_result() -> None:
    chain = parse_chain(conflist(BRIDGE))
    assert "prevResult" not in stdin(chain, 0, "DEL", prev=None)


def test_runtime_config_carries_only_declared_capabilities_with_a_value() -> None:
    plugin = {
        "type": "tuning",
        "capabilities": {"mac": True, "ips": True, "bandwidth": False, "portMappings": True},
        "runtimeConfig": {"custom": 1, "mac": "02:00:00:00:00:99"},
    }
    runtime = RuntimeArgs(
        mac="02:00:00:00:00:01",
        ips=("198.51.100.7/24",),
        bandwidth={"ingressRate": 1000},
        device_id="0000:3b:00.1",
    )
    conf = stdin(parse_chain(conflist(plugin)), 0, runtime=runtime)
    # bandwidth not declared true, deviceID not declared, portMappings declared but not given;
    # the caller's mac replaces the config's own; `capabilities` itself is not passed on
    assert conf["runtimeConfig"] == {
        "custom": 1,
        "mac": "02:00:00:00:00:01",
        "ips": ["198.51.100.7/24"],
    }
    assert "capabilities" not in conf


def test_no_runtime_config_when_nothing_applies() -> None:
    conf = stdin(parse_chain(conflist({"type": "tuning", "capabilities": {"mac": True}})), 0)
    assert "runtimeConfig" not in conf


def test_every_capability_maps_to_its_conventional_key() -> None:
    names = ("mac", "ips", "deviceID", "bandwidth", "portMappings", "infinibandGUID")
    plugin = {"type": "x", "capabilities": dict.fromkeys(names, True)}
    runtime = RuntimeArgs(
        mac="02:00:00:00:00:01",
        ips=("198.51.100.7/24", "2001:db8::7/64"),
        device_id="0000:3b:00.1",
        bandwidth={"ingressRate": 1000, "ingressBurst": 10},
        port_mappings=({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},),
        infiniband_guid="c2:11:22:33:44:55:66:77",
    )
    conf = stdin(parse_chain(conflist(plugin)), 0, runtime=runtime, device=None)
    assert conf["runtimeConfig"] == {
        "mac": "02:00:00:00:00:01",
        "ips": ["198.51.100.7/24", "2001:db8::7/64"],
        "deviceID": "0000:3b:00.1",
        "bandwidth": {"ingressRate": 1000, "ingressBurst": 10},
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "infinibandGUID": "c2:11:22:33:44:55:66:77",
    }


@pytest.mark.parametrize("kind", ["macvlan", "ipvlan", "vlan"])
def test_the_device_is_the_master_of_a_child_link_unless_the_config_names_one(kind: str) -> None:
    assert stdin(parse_chain(conflist({"type": kind})), 0)["master"] == "ens5"
    assert stdin(parse_chain(conflist({"type": kind, "master": "eth9"})), 0)["master"] == "eth9"


@pytest.mark.parametrize(
    ("plugin", "runtime", "expected_device"),
    [
        ({"type": "host-device"}, RuntimeArgs(), "ens5"),
        ({"type": "host-device", "device": "eth9"}, RuntimeArgs(), "eth9"),
        ({"type": "host-device", "hwaddr": "02:00:00:00:00:01"}, RuntimeArgs(), None),
        ({"type": "host-device", "pciBusID": "0000:3b:00.1"}, RuntimeArgs(), None),
        ({"type": "host-device", "kernelpath": "/sys/devices/x"}, RuntimeArgs(), None),
        # a deviceID the plugin takes from runtimeConfig names the device already
        (
            {"type": "host-device", "capabilities": {"deviceID": True}},
            RuntimeArgs(device_id="0000:3b:00.1"),
            None,
        ),
        # declared, but no deviceID given: the interface name it is
        ({"type": "host-device", "capabilities": {"deviceID": True}}, RuntimeArgs(), "ens5"),
    ],
)
def test_host_device_gets_the_device_when_nothing_else_names_it(
    plugin: dict[str, Any], runtime: RuntimeArgs, expected_device: str | None
) -> None:
    conf = stdin(parse_chain(conflist(plugin)), 0, runtime=runtime)
    assert conf.get("device") == expected_device


def test_other_plugins_and_no_device_are_left_alone() -> None:
    chain = parse_chain(conflist(BRIDGE, {"type": "macvlan"}))
    assert "master" not in stdin(chain, 0) and "device" not in stdin(chain, 0)
    assert "master" not in stdin(chain, 1, device=None)


def test_building_stdin_does_not_change_the_chain() -> None:
    chain = parse_chain(conflist({"type": "macvlan", "capabilities": {"mac": True}}))
    stdin(chain, 0, runtime=RuntimeArgs(mac="02:00:00:00:00:01"))["type"] = "changed"
    assert chain.plugins[0] == {"type": "macvlan", "capabilities": {"mac": True}}


# -- environment -----------------------------------------------------------------------------

POD = PodRef(namespace="team-a", name="web-0", uid="2f6c-11")


def test_the_environment_is_the_cni_variables_and_path_only() -> None:
    env = plugin_env(
        command="ADD",
        container_id="c0ffee",
        netns="/var/run/netns/p1",
        ifname="net1",
        pod=POD,
        bin_dirs=("/opt/cni/bin", "/usr/lib/cni"),
        path="/usr/sbin:/usr/bin",
    )
    assert env == {
        "PATH": "/usr/sbin:/usr/bin",
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c0ffee",
        "CNI_NETNS": "/var/run/netns/p1",
        "CNI_IFNAME": "net1",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;"
        "K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=2f6c-11",
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
    }


def test_invocation_problems_name_what_would_garble_the_environment() -> None:
    ok = {"container_id": "c0ffee", "ifname": "net1", "pod": POD, "bin_dirs": ["/usr/lib/cni"]}
    assert invocation_problems(**ok) == []  # type: ignore[arg-type]
    bad = invocation_problems(
        container_id="-x/y",
        ifname="a-name-too-long-1",
        pod=PodRef(namespace="a;b", name="n", uid="u=1"),
        bin_dirs=["relative", "/a:b"],
    )
    assert bad == [
        "container ID '-x/y': a letter or digit, then letters, digits, '_.-'",
        "ifname 'a-name-too-long-1': 1-15 characters, no '/', ':' or space",
        "pod namespace 'a;b': no ';' or '=' (CNI_ARGS separators)",
        "pod uid 'u=1': no ';' or '=' (CNI_ARGS separators)",
        "bin dir 'relative': an absolute path without ':'",
        "bin dir '/a:b': an absolute path without ':'",
    ]


# -- the cache file name ---------------------------------------------------------------------


def test_cache_file_names_stay_in_the_directory_and_never_collide() -> None:
    names = {cache.file_name(k) for k in ("ns/claim/0", "ns_claim_0", "../../etc/passwd", "..")}
    assert len(names) == 4
    for name in names:
        assert "/" not in name and name.endswith(".json") and not name.startswith(".")
    assert cache.file_name("ns/claim/0").startswith("ns_claim_0-")
    assert len(cache.file_name("k" * 1000)) == 64 + 1 + 16 + len(".json")


def record(**over: Any) -> cache.Record:
    fields: dict[str, Any] = {
        "key": "team-a/claim/0",
        "state": "adding",
        "config": conflist(BRIDGE),
        "container_id": "c0ffee",
        "netns": "/var/run/netns/p1",
        "ifname": "net1",
        "device": "ens5",
        "pod": POD,
        "runtime": RuntimeArgs(mac="02:00:00:00:00:01"),
    }
    fields.update(over)
    return cache.Record(**fields)


def test_a_record_is_created_once_replaced_read_back_and_removed(tmp_path: Path) -> None:
    path = cache.path_for(tmp_path / "cni", "team-a/claim/0")
    assert cache.read(path) is None
    cache.create(path, record())
    with pytest.raises(CniError, match="already holds an attachment for key 'team-a/claim/0'"):
        cache.create(path, record(device="other"))
    assert cache.read(path) == record()  # the first one stays
    done = record(state="added", result={"cniVersion": "1.0.0"})
    cache.replace(path, done)
    assert cache.read(path) == done
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary files
    cache.remove(path)
    cache.remove(path)  # already gone: fine
    assert cache.read(path) is None


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 2}', b"[]"])
def test_a_damaged_record_is_an_error_not_a_missing_one(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / cache.file_name("k")
    path.write_bytes(content)
    with pytest.raises(CniError, match=f"CNI cache {path} is damaged"):
        cache.read(path)


# -- results ---------------------------------------------------------------------------------

NETNS = "/var/run/netns/pod1"


def result_040() -> dict[str, Any]:
    return {
        "cniVersion": "0.4.0",
        "interfaces": [
            {"name": "br-t", "mac": "0e:9f:be:9b:2b:f0"},
            {"name": "veth67317c77", "mac": "0e:9f:be:9b:2b:f0"},
            {"name": "net1", "mac": "02:AA:00:00:00:42", "sandbox": NETNS},
        ],
        "ips": [
            {
                "version": "4",
                "interface": 2,
                "address": "198.51.100.2/24",
                "gateway": "198.51.100.1",
            },
            {
                "version": "6",
                "interface": 2,
                "address": "2001:db8:0:0::2/64",
                "gateway": "2001:db8::1",
            },
            {"version": "4", "interface": 1, "address": "203.0.113.9/24"},
        ],
        "routes": [{"dst": "0.0.0.0/0", "gw": "198.51.100.1"}, {"dst": "198.18.100.0/24"}],
        "dns": {"nameservers": ["203.0.113.53"], "domain": "example.test", "search": ["a.test"]},
    }


def result_100() -> dict[str, Any]:
    doc = result_040()
    doc["cniVersion"] = "1.0.0"
    for entry in doc["ips"]:
        del entry["version"]
    return doc


EXPECTED = Outcome(
    interface="net1",
    mac="02:aa:00:00:00:42",
    ips=("198.51.100.2/24", "2001:db8::2/64"),  # not the one on the host-side veth
    gateway4="198.51.100.1",
    gateway6="2001:db8::1",
    routes=(Route("0.0.0.0/0", "198.51.100.1"), Route("198.18.100.0/24")),
    dns=Dns(nameservers=("203.0.113.53",), domain="example.test", search=("a.test",)),
)


@pytest.mark.parametrize("result", [result_040(), result_100()], ids=["0.4.0", "1.0.0"])
def test_both_result_shapes_give_the_same_outcome(result: dict[str, Any]) -> None:
    assert parse_outcome(result, ifname="net1", netns=NETNS) == EXPECTED


def test_the_pod_interface_is_the_one_in_the_pods_netns() -> None:
    doc = result_100()
    # the same name on the host side (another plugin's) and in another sandbox come first
    doc["interfaces"][:0] = [{"name": "net1", "mac": "02:00:00:00:00:01"}]
    doc["interfaces"].insert(1, {"name": "net1", "mac": "02:00:00:00:00:02", "sandbox": "/x"})
    for entry in doc["ips"]:
        entry["interface"] += 2
    assert parse_outcome(doc, ifname="net1", netns=NETNS).mac == "02:aa:00:00:00:42"


def test_ipam_only_results_and_missing_interfaces() -> None:
    doc = {"cniVersion": "1.0.0", "ips": [{"address": "203.0.113.10/24"}]}
    assert parse_outcome(doc, ifname="net1", netns=NETNS) == Outcome(
        interface="net1",
        mac="",
        ips=("203.0.113.10/24",),
        gateway4=None,
        gateway6=None,
        routes=(),
        dns=Dns(),
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(ips="x"), 'CNI result ips: must be a list, got "x"'),
        (
            lambda d: d["ips"][0].update(address="300.1.1.1/24"),
            'CNI result ips[0].address: must be an IP address, got "300.1.1.1/24"',
        ),
        (
            lambda d: d["routes"].append({"gw": "198.51.100.1"}),
            "CNI result routes[2].dst: must be a CIDR, got null",
        ),
        (lambda d: d.update(dns=["x"]), 'CNI result dns: must be an object, got ["x"]'),
        (lambda d: d["interfaces"].append(3), "CNI result interfaces[3]: must be an object, got 3"),
    ],
)
def test_a_malformed_result_is_a_cni_error(mutate: Any, message: str) -> None:
    doc = result_100()
    mutate(doc)
    with pytest.raises(CniError) as caught:
        parse_outcome(doc, ifname="net1", netns=NETNS)
    assert str(caught.value) == message


def test_cni_errors_are_attach_errors() -> None:
    error = CniError("x", plugin="bridge", command="ADD", code=11)
    assert isinstance(error, AttachError)
    assert (error.plugin, error.command, error.code) == ("bridge", "ADD", 11)
