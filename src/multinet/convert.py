"""``multinet convert-nad``: from Multus NetworkAttachmentDefinitions to PodNetworks. Pure.

Input: the text of one or more YAML or JSON documents (kubectl ``List`` objects and top-level
lists are opened): NetworkAttachmentDefinitions (``k8s.cni.cncf.io/v1``, ``spec.config`` a JSON
string holding a CNI config or conflist) and workloads whose pod template carries the
``k8s.v1.cni.cncf.io/networks`` annotation (Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet,
Job, CronJob). ``convert`` returns the documents to print and the warnings and notes for stderr,
or raises ``ConvertError`` listing every error, each naming the document (kind, namespace/name,
position in the input) and the field that caused it.

Output, per NAD ``ns/name``: a PodNetwork named ``ns-name`` (``name`` when ``ns`` is ``default``
or absent), because PodNetworks are cluster-scoped; its DeviceClass, created by the controller,
has the same name. Per workload using NADs: one ResourceClaimTemplate ``<workload>-networks``
with one request per annotation entry (named after the pod interface, class = the PodNetwork)
and that request's claim config, preceded by a comment saying what to add to the pod spec.

The mapping, deliberately exact: what cannot be expressed exactly stays a CNI chain (``mode:
cni``) and a note says why; nothing is dropped without a note.

- ``macvlan`` with ``master: X`` -> ``mode: macvlan``, ``interfaces.names: [X]``,
  ``macvlanMode`` = the plugin's ``mode`` (default bridge), ``mtu``.
- ``host-device`` with ``device: X`` -> ``mode: host-device``, ``interfaces.names: [X]``;
  ``pciBusID``, ``hwaddr``, ``kernelpath`` or no ``device`` is an error: multinet selects host
  interfaces by name.
- their ``ipam``: ``static`` addresses -> a pool of exactly that address (subnet = its network,
  rangeStart = rangeEnd = the address, its gateway); ``host-local`` ``subnet``/``ranges`` and
  ``whereabouts`` ``range`` (also ``A-B/len``)/``ipRanges`` -> ``ipam: {type: pool, subnet,
  rangeStart, rangeEnd, exclude, gateway}``, one pool per family (two: ``ipam.subnets``);
  host-local's default gateway (the subnet's first address) is written out. ``routes`` ->
  ``routes``, a route without ``gw`` going through the pool's gateway as CNI's does. No ipam ->
  ``ipam: none``. Other IPAM types (dhcp, ...), range sets of several ranges, two ranges of one
  family, several static addresses of one family -> ``mode: cni``.
- then only ``tuning`` plugins: ``sysctl`` -> ``sysctls`` (keys as written, naming the pod
  interface; a key with ``IFNAME`` or one multinet does not set -> ``mode: cni``); ``mac`` ->
  the claim configs' ``mac``. Any other plugin or key -> ``mode: cni``.
- everything else -> ``mode: cni``, ``cni.config`` = the parsed ``spec.config``, and
  ``interfaces.names`` = the first plugin's ``master`` or ``device``, else ``<FILL-IN>`` with a
  warning: multinet allocates a host NIC to each claim, and only the user knows which.
- an annotation entry: ``interface`` (or ``@ifname``; default ``net<position>``, as Multus names
  them) -> ``interfaceName``, ``ips`` -> ``addresses``, ``mac`` -> ``mac``, ``default-route`` ->
  ``defaultRoute: true`` (one network per pod), plus, when the gateway is not the one the network
  routes through, ``routes`` = the network's routes with a default route via that gateway. In
  ``mode: cni`` the CNI result's gateway is used, so another gateway is an error.

Every PodNetwork is checked with ``parameters.parse`` and every claim config with
``claimconfig.parse`` and ``claimconfig.effective_config`` against its network.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from multinet.api import claimconfig, names, parameters, policy
from multinet.api.fields import IPAddress, IPInterface, IPNetwork
from multinet.api.parameters import NetworkParameters
from multinet.api.problems import show
from multinet.errors import ConfigError

ANNOTATION = "k8s.v1.cni.cncf.io/networks"
NAD_API_VERSION = "k8s.cni.cncf.io/v1"
NAD_KIND = "NetworkAttachmentDefinition"
FILL_IN = "<FILL-IN>"
CLAIM_NAME = "networks"  # the pod's resourceClaims entry
MAX_NETWORK_NAME = 64  # the device attribute naming a device's PodNetwork is a DRA string
DEFAULT_DESTINATION = {4: "0.0.0.0/0", 6: "::/0"}

#: Kinds holding a pod template, and the path to it (a Pod is its own template).
POD_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

_CONFLIST_KEYS = {"cniVersion", "cniVersions", "name", "plugins", "disableCheck", "disableGC"}
_MACVLAN_KEYS = {"type", "name", "cniVersion", "master", "mode", "mtu", "ipam", "capabilities"}
_MACVLAN_KEYS |= {"linkInContainer"}
_HOST_DEVICE_KEYS = {"type", "name", "cniVersion", "device", "ipam", "capabilities"}
_HOST_DEVICE_OTHER_SELECTORS = ("pciBusID", "hwaddr", "kernelpath")
_TUNING_KEYS = {"type", "sysctl", "mac", "capabilities"}
_ROUTE_KEYS = {"dst", "gw"}
_STATIC_KEYS = {"type", "addresses", "routes", "dns"}
_HOST_LOCAL_KEYS = {"type", "subnet", "rangeStart", "rangeEnd", "gateway", "ranges", "routes"}
_HOST_LOCAL_KEYS |= {"dns", "dataDir", "resolvConf"}
_HOST_LOCAL_RANGE_KEYS = {"subnet", "rangeStart", "rangeEnd", "gateway"}
_WHEREABOUTS_KEYS = {"type", "range", "range_start", "range_end", "exclude", "ipRanges"}
_WHEREABOUTS_KEYS |= {"gateway", "routes", "dns"}
_WHEREABOUTS_RANGE_KEYS = {"range", "range_start", "range_end", "exclude"}
#: whereabouts' own storage, logging and allocation tuning: nothing to carry over.
_WHEREABOUTS_OPERATIONAL = {
    "kubernetes",
    "datastore",
    "etcd_host",
    "etcd_username",
    "etcd_password",
    "etcd_key_file",
    "etcd_cert_file",
    "etcd_ca_cert_file",
    "log_file",
    "log_level",
    "leader_lease_duration",
    "leader_renew_deadline",
    "leader_retry_period",
    "reconciler_cron_expression",
    "enable_overlapping_ranges",
    "sleep_for_race",
    "configuration_path",
    "network_name",
    "node_slice_size",
}
_ELEMENT_KEYS = {"name", "namespace", "interface", "ips", "mac", "default-route"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

HELP_DESCRIPTION = f"""\
Migrate from Multus: convert NetworkAttachmentDefinitions, and the workloads whose
{ANNOTATION} annotation uses them, into multinet objects.

FILE (or - for stdin) holds YAML or JSON documents: NetworkAttachmentDefinitions
({NAD_API_VERSION}, spec.config a JSON CNI config or conflist) and optionally Pods,
Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs and CronJobs (kubectl List objects are
opened). Printed on stdout as YAML: a PodNetwork per NAD, named <namespace>-<name> (<name> in
namespace default), and per workload a ResourceClaimTemplate <name>-networks with a comment
saying what to add to its pod spec. Warnings and notes go to stderr."""

HELP_EPILOG = f"""\
mapping (what is not exact stays mode: cni, with a note saying why):
  macvlan, master X           mode: macvlan, interfaces.names [X], macvlanMode (bridge), mtu
  host-device, device X       mode: host-device, interfaces.names [X]
                              (pciBusID, hwaddr, kernelpath: an error; give the name)
  ipam static                 ipam pool of exactly that address (one per family)
  ipam host-local/whereabouts ipam pool: subnet, rangeStart, rangeEnd, exclude, gateway;
                              two families: ipam.subnets; ipam routes: routes
  + tuning sysctl / mac       sysctls (no IFNAME placeholder) / the claims' mac
  anything else               mode: cni, cni.config = spec.config; interfaces.names from
                              master or device, else {FILL_IN} and a warning: choose the
                              host interfaces whose devices the claims allocate
  annotation entry            claim config: interface -> interfaceName (default net<N>),
                              ips -> addresses, mac, default-route -> defaultRoute (+ a route
                              when the gateway differs from the network's)

exit status: 0 converted (read the warnings); 1 an error, nothing printed on stdout: bad YAML
or JSON, a document neither a NAD nor a workload, a NAD without spec.config or whose
spec.config is not JSON, or a value multinet rejects. Errors name the document and field."""


class ConvertError(Exception):
    """The input cannot be converted; ``errors`` holds every problem, each naming its document."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


class _Bad(Exception):
    """A value of the input that makes its document unconvertible."""

    def __init__(self, where: str, rule: str) -> None:
        super().__init__(f"{where}: {rule}")
        self.where = where
        self.rule = rule


class _Unmappable(Exception):
    """The config has no exact multinet equivalent: it stays a CNI chain (``mode: cni``)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Document:
    """One output document and the comment lines printed above it."""

    comments: tuple[str, ...]
    body: dict[str, Any]


@dataclass
class Result:
    documents: list[Document] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the user must act
    notes: list[str] = field(default_factory=list)  # what was dropped or kept as a CNI chain


@dataclass(frozen=True)
class Source:
    """One input document and where it was: ``document 2`` or ``document 2 item 3``."""

    where: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind"))

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name"))

    @property
    def namespace(self) -> str | None:
        ns = self.metadata.get("namespace")
        return ns if isinstance(ns, str) and ns else None

    @property
    def label(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name} ({self.where})"


@dataclass
class _Pool:
    values: dict[str, Any]  # subnet, rangeStart, rangeEnd, exclude, gateway as multinet spells them
    origins: dict[str, str]  # multinet key -> the NAD field it came from
    version: int | None  # of the subnet; None when it does not parse (validation says why)


@dataclass
class _Mapped:
    """A NAD's config as PodNetwork parameters, with where each parameter came from."""

    params: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # parameter path -> NAD field
    notes: list[str] = field(default_factory=list)
    gateways: dict[int, IPAddress] = field(default_factory=dict)  # pool gateway per family
    cni_gateways: frozenset[IPAddress] = frozenset()  # mode cni: gateways its IPAM names
    mac: tuple[Any, str] | None = None  # tuning's fixed MAC and its field
    fill_in: bool = False

    def set(self, key: str, value: Any, origin: str) -> None:
        self.params[key] = value
        self.origins[key] = origin


@dataclass(frozen=True)
class _Network:
    source: Source
    name: str
    mapped: _Mapped
    parsed: NetworkParameters


@dataclass(frozen=True)
class _Attachment:
    """One entry of the networks annotation."""

    position: int  # 0-based
    where: str  # its path, for messages
    namespace: str
    name: str
    interface: str | None
    element: dict[str, Any]  # the JSON form's object ({} in the comma form)

    @property
    def pod_ifname(self) -> str:
        return self.interface or f"net{self.position + 1}"  # Multus's default names

    @property
    def interface_origin(self) -> str:
        return f"{self.where}.interface" if self.element else self.where


# --- reading the input ---------------------------------------------------------------------


def load(text: str, source: str = "input") -> tuple[list[Source], list[str]]:
    """Every object of the input, and what is not one; ``ConvertError`` when the input is not
    YAML or JSON or holds nothing."""
    raw = _documents(text, source)
    sources: list[Source] = []
    errors: list[str] = []
    for i, doc in enumerate(raw, 1):
        if _is_list(doc):
            items = doc["items"] if isinstance(doc, dict) else doc
            for j, item in enumerate(items, 1):
                _add_source(item, f"document {i} item {j}", sources, errors)
        elif doc is not None:
            _add_source(doc, f"document {i}", sources, errors)
    if not sources and not errors:
        raise ConvertError([f"{source}: holds no documents"])
    return sources, errors


def _documents(text: str, source: str) -> list[Any]:
    if text.lstrip()[:1] in ("{", "["):
        try:
            doc = json.loads(text)
        except ValueError:
            pass  # YAML flow style, or broken: YAML's parser says where
        else:
            return [doc]
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ConvertError([f"{source}: is not valid YAML or JSON: {_yaml_problem(exc)}"]) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line: what, where, and in what."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    text = f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    if exc.context and exc.context_mark is not None:
        text += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return text


def _is_list(doc: Any) -> bool:
    if isinstance(doc, list):
        return True
    return (
        isinstance(doc, dict)
        and str(doc.get("kind", "")).endswith("List")
        and isinstance(doc.get("items"), list)
    )


def _add_source(doc: Any, where: str, sources: list[Source], errors: list[str]) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        errors.append(
            f"{where}: is not a Kubernetes object (a mapping with apiVersion, kind and "
            f"metadata), got {show(doc)}"
        )
        return
    src = Source(where, doc)
    if not isinstance(src.metadata.get("name"), str) or not src.metadata["name"]:
        errors.append(f"{src.kind} ({where}): metadata.name: is required")
        return
    sources.append(src)


# --- the conversion ------------------------------------------------------------------------


def convert(text: str, source: str = "input") -> Result:
    """Convert the input; ``ConvertError`` lists every problem (then nothing is to be printed)."""
    sources, errors = load(text, source)
    nads: list[Source] = []
    workloads: list[Source] = []
    for src in sources:
        if src.kind == NAD_KIND and src.body.get("apiVersion") == NAD_API_VERSION:
            nads.append(src)
        elif src.kind == NAD_KIND:
            got = show(src.body.get("apiVersion"))
            errors.append(f"{src.label}: apiVersion: must be {NAD_API_VERSION}, got {got}")
        elif src.kind in POD_TEMPLATES:
            workloads.append(src)
        else:
            errors.append(
                f"{src.label}: is neither a {NAD_KIND} nor a workload with a pod template "
                f"({', '.join(POD_TEMPLATES)}); leave it out of the input"
            )
    result = Result()
    networks: dict[tuple[str, str], _Network | None] = {}
    for src in nads:
        _add_network(src, networks, result, errors)
    for src in workloads:
        _add_workload(src, networks, result, errors)
    if errors:
        raise ConvertError(errors)
    return result


def network_name(namespace: str, name: str) -> str:
    """The PodNetwork for NAD ``namespace/name``: PodNetworks are cluster-scoped."""
    return name if namespace == "default" else f"{namespace}-{name}"


def _add_network(
    src: Source,
    networks: dict[tuple[str, str], _Network | None],
    result: Result,
    errors: list[str],
) -> None:
    key = (src.namespace or "default", src.name)
    name = network_name(*key)
    if key in networks:
        errors.append(f"{src.label}: {NAD_KIND} {'/'.join(key)} is in the input twice")
        return
    networks[key] = None  # until it converts: uses of it are then not reported again
    taken = [n for n in networks.values() if n is not None and n.name == name]
    if problem := _name_problem(name, taken):
        errors.append(f"{src.label}: {problem}")
        return
    try:
        mapped = _map_config(_nad_config(src))
    except _Bad as exc:
        errors.append(f"{src.label}: {exc}")
        return
    try:
        parsed = parameters.parse(mapped.params)
    except ConfigError as exc:
        what = f"PodNetwork {name}"
        errors += [f"{src.label}: {e}" for e in _explain(exc.errors, "parameters", mapped, what)]
        return
    networks[key] = _Network(src, name, mapped, parsed)
    result.notes += [f"{src.label}: {note}" for note in mapped.notes]
    if mapped.fill_in:
        result.warnings.append(_fill_in_warning(src, name, mapped))
    result.documents.append(
        Document(_network_comments(src, name, mapped), _pod_network(name, mapped))
    )


def _name_problem(name: str, taken: list[_Network]) -> str | None:
    if taken:
        return (
            f"its PodNetwork would be named {name}, as is the one of {taken[0].source.label}; "
            "rename one of them in the input"
        )
    if len(name) > MAX_NETWORK_NAME or not _DNS_SUBDOMAIN.match(name):
        return (
            f"its PodNetwork would be named {name}, which is not a name of at most "
            f"{MAX_NETWORK_NAME} lowercase letters, digits, '-' and '.' (the DRA device attribute "
            "naming a device's network holds 64 characters); rename the NAD in the input"
        )
    return None


def _nad_config(src: Source) -> dict[str, Any]:
    spec = src.body.get("spec")
    config = spec.get("config") if isinstance(spec, dict) else None
    if config is None or config == "":
        raise _Bad(
            "spec.config",
            "is required: the CNI config to convert (without it Multus reads a file of that name "
            "on each node: put that file's JSON in spec.config)",
        )
    if not isinstance(config, str):
        raise _Bad("spec.config", f"must be a string holding JSON, got {show(config)}")
    try:
        doc = json.loads(config)
    except ValueError as exc:
        raise _Bad("spec.config", f"is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Bad("spec.config", f"must hold a CNI config or conflist object, got {show(doc)}")
    return doc


def _pod_network(name: str, mapped: _Mapped) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name},
        "spec": {"provider": names.PROVIDER, "enabled": True, "parameters": mapped.params},
    }


def _network_comments(src: Source, name: str, mapped: _Mapped) -> tuple[str, ...]:
    mode = mapped.params.get("mode")
    nic = mapped.params["interfaces"]["names"][0]
    what = {
        "macvlan": f"mode macvlan: each claim gets a macvlan child of {nic}",
        "host-device": f"mode host-device: each claim gets the NIC {nic} itself",
    }.get(str(mode), "mode cni: multinet runs spec.config's CNI chain for each claim")
    lines = [
        f"From {src.label}; {what}.",
        f"Claims use the DeviceClass {name} (made by the controller).",
    ]
    if mapped.fill_in:
        lines.append(f"interfaces.names: replace {FILL_IN} before applying (see the warning).")
    return tuple(lines)


def _fill_in_warning(src: Source, name: str, mapped: _Mapped) -> str:
    kind = mapped.params.get("mode")
    return (
        f"{src.label}: PodNetwork {name} has interfaces.names: [{FILL_IN}]: the NAD's config "
        f"names no host interface (no master or device), but multinet allocates a host NIC to "
        f"every claim (mode {kind}): replace {FILL_IN} with the host interface name(s) or globs "
        "whose DRA devices the claims should allocate before applying it"
    )


# --- NAD config -> parameters ----------------------------------------------------------------


def _map_config(config: dict[str, Any]) -> _Mapped:
    """PodNetwork parameters for a CNI config or conflist (``spec.config`` of a NAD)."""
    plugins = _plugin_list(config)
    if plugins:
        _check_host_device(*plugins[0])
    try:
        return _native(config, plugins)
    except _Unmappable as exc:
        return _as_cni(config, plugins, exc.reason)


def _plugin_list(config: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The plugins with their paths; empty when malformed (the CNI validation then says how)."""
    if "plugins" not in config:
        return [(config, "spec.config")]
    raw = config["plugins"]
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        return []
    return [(p, f"spec.config.plugins[{i}]") for i, p in enumerate(raw)]


def _check_host_device(plugin: dict[str, Any], path: str) -> None:
    if plugin.get("type") != "host-device":
        return
    given = [k for k in _HOST_DEVICE_OTHER_SELECTORS if plugin.get(k)]
    if given:
        raise _Bad(
            f"{path}.{given[0]}",
            "multinet selects host interfaces by name, not by PCI address, MAC or sysfs path: "
            f'replace {given[0]} with "device": "<the interface\'s name on the nodes>" and run '
            "again (a glob such as ens2f* can go into the PodNetwork's interfaces.names later)",
        )
    if not plugin.get("device"):
        raise _Bad(
            f"{path}.device",
            "is required: multinet selects host interfaces by name; set it to the interface's "
            'name on the nodes ("device": "eth2") and run again',
        )


def _native(config: dict[str, Any], plugins: list[tuple[dict[str, Any], str]]) -> _Mapped:
    if not plugins:
        raise _Unmappable()
    (first, path), rest = plugins[0], plugins[1:]
    if first.get("type") not in ("macvlan", "host-device"):
        raise _Unmappable()  # a CNI chain by design: no reason to tell
    if "plugins" in config:
        _only(config, _CONFLIST_KEYS, "spec.config")
    mapped = _Mapped()
    if first.get("type") == "macvlan":
        _macvlan(first, path, mapped)
    else:
        _only(first, _HOST_DEVICE_KEYS, path)
        _capabilities(first, path, {"ips", "mac"})
        _interfaces(first, "device", path, mapped)
        mapped.set("mode", "host-device", f"{path}.type")
        if first.get("ipam") is None:
            mapped.notes.append(
                f"{path}: no ipam: multinet's ipam none moves the NIC into the pod with the "
                "addresses it has on the host (CNI host-device's pods got it without any)"
            )
    _ipam(first.get("ipam"), f"{path}.ipam", mapped)
    for plugin, at in rest:
        _tuning(plugin, at, mapped)
    return mapped


def _macvlan(plugin: dict[str, Any], path: str, mapped: _Mapped) -> None:
    _only(plugin, _MACVLAN_KEYS, path)
    _capabilities(plugin, path, {"ips", "mac"})
    if plugin.get("linkInContainer"):
        raise _Unmappable(
            f"{path}.linkInContainer: a parent inside the pod's namespace has no multinet "
            "equivalent"
        )
    _interfaces(plugin, "master", path, mapped)
    mapped.set("mode", "macvlan", f"{path}.type")
    mapped.set("macvlanMode", plugin.get("mode", "bridge"), f"{path}.mode")
    if "mtu" in plugin:
        mapped.set("mtu", plugin["mtu"], f"{path}.mtu")


def _interfaces(plugin: dict[str, Any], key: str, path: str, mapped: _Mapped) -> None:
    nic = plugin.get(key)
    if nic is None or nic == "":
        nic = FILL_IN
        mapped.fill_in = True
    mapped.params["interfaces"] = {"names": [nic]}
    mapped.origins["interfaces.names[0]"] = f"{path}.{key}"


def _only(obj: dict[str, Any], allowed: set[str], path: str) -> None:
    extra = sorted(str(k) for k in obj if k not in allowed)
    if extra:
        has = "has" if len(extra) == 1 else "have"
        raise _Unmappable(f"{', '.join(f'{path}.{k}' for k in extra)} {has} no multinet equivalent")


def _capabilities(plugin: dict[str, Any], path: str, allowed: set[str]) -> None:
    caps = plugin.get("capabilities")
    if caps is None:
        return
    if not isinstance(caps, dict):
        raise _Unmappable(f"{path}.capabilities is not an object")
    extra = sorted(str(k) for k, on in caps.items() if on and k not in allowed)
    if extra:
        raise _Unmappable(f"{path}.capabilities.{extra[0]} has no multinet equivalent")


def _tuning(plugin: dict[str, Any], path: str, mapped: _Mapped) -> None:
    kind = plugin.get("type")
    if kind != "tuning":
        raise _Unmappable(f"{path} (type {show(kind)}) has no multinet equivalent")
    _only(plugin, _TUNING_KEYS, path)
    _capabilities(plugin, path, {"mac"})
    sysctl = plugin.get("sysctl", {})
    if not isinstance(sysctl, dict):
        raise _Unmappable(f"{path}.sysctl is not an object")
    for key, value in sysctl.items():
        at = f"{path}.sysctl[{key}]"
        if "IFNAME" in str(key):
            raise _Unmappable(
                f"{at} uses the IFNAME placeholder; multinet's sysctls name the pod interface"
            )
        if not isinstance(key, str) or policy.check_sysctl_key(key):
            raise _Unmappable(f"{at} is not a net.ipv4/net.ipv6 key multinet sets")
        mapped.params.setdefault("sysctls", {})[key] = value
        mapped.origins[f"sysctls.{key}"] = at
    if "mac" in plugin:
        mapped.mac = (plugin["mac"], f"{path}.mac")
        mapped.notes.append(
            f"{path}.mac: Multus gave every pod of the network this MAC; multinet sets MACs per "
            "claim: it is in the claim config of each workload converted here; add mac to the "
            "claim config of any other"
        )


# --- ipam ----------------------------------------------------------------------------------


def _ipam(raw: Any, path: str, mapped: _Mapped) -> None:
    if raw is None:
        return  # multinet's ipam none
    if not isinstance(raw, dict):
        raise _Unmappable(f"{path} is not an object")
    kind = raw.get("type")
    if kind == "static":
        pools = _static(raw, path, mapped)
    elif kind == "host-local":
        pools = _host_local(raw, path, mapped)
    elif kind == "whereabouts":
        pools = _whereabouts(raw, path, mapped)
    else:
        raise _Unmappable(
            f"{path}.type {show(kind)} has no multinet equivalent (multinet hands out addresses "
            "from a pool, or none)"
        )
    _set_pools(pools, path, mapped)
    _routes(raw.get("routes"), f"{path}.routes", mapped)
    if "dns" in raw:
        mapped.notes.append(
            f"{path}.dns is dropped: DNS settings of a pod's additional networks are applied "
            "neither by Kubernetes nor by multinet"
        )


def _pool(values: dict[str, Any], origins: dict[str, str]) -> _Pool:
    kept = {k: values[k] for k in ("subnet", "rangeStart", "rangeEnd", "exclude", "gateway")}
    kept = {k: v for k, v in kept.items() if v is not None and v != []}
    kept.setdefault("subnet", values["subnet"])
    net = _network(kept["subnet"])
    return _Pool(kept, {k: origins[k] for k in kept}, net.version if net else None)


def _set_pools(pools: list[_Pool], path: str, mapped: _Mapped) -> None:
    if not pools:
        return
    versions = [p.version for p in pools if p.version is not None]
    if len(pools) > parameters.MAX_SUBNETS or len(set(versions)) != len(versions):
        raise _Unmappable(f"{path}: {len(pools)} ranges; multinet takes one pool per family")
    if len(pools) == 1:
        mapped.set("ipam", {"type": "pool", **pools[0].values}, path)
        prefixes = ["ipam"]
    else:
        mapped.set("ipam", {"type": "pool", "subnets": [p.values for p in pools]}, path)
        prefixes = [f"ipam.subnets[{i}]" for i in range(len(pools))]
    for prefix, pool in zip(prefixes, pools, strict=True):
        mapped.origins.update({f"{prefix}.{k}": v for k, v in pool.origins.items()})
        gateway = _address(pool.values.get("gateway"))
        if gateway is not None and pool.version == gateway.version:
            mapped.gateways[gateway.version] = gateway


def _routes(raw: Any, path: str, mapped: _Mapped) -> None:
    if raw is None:
        return
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise _Unmappable(f"{path} is not a list of routes")
    out: list[dict[str, Any]] = []
    for i, route in enumerate(raw):
        at = f"{path}[{i}]"
        _only(route, _ROUTE_KEYS, at)
        mapped.origins[f"routes[{i}]"] = at
        entry: dict[str, Any] = {}
        if "dst" in route:
            entry["destination"] = route["dst"]
            mapped.origins[f"routes[{i}].destination"] = f"{at}.dst"
        gateway = route.get("gw")
        net = _network(route.get("dst"))
        if gateway is None and net is not None and net.version in mapped.gateways:
            gateway = str(mapped.gateways[net.version])  # CNI routes through the IPAM's gateway
        if gateway is not None:
            entry["gateway"] = gateway
            mapped.origins[f"routes[{i}].gateway"] = f"{at}.gw" if "gw" in route else at
        out.append(entry)
    if out:
        mapped.params["routes"] = out


def _static(raw: dict[str, Any], path: str, mapped: _Mapped) -> list[_Pool]:
    _only(raw, _STATIC_KEYS, path)
    addresses = raw.get("addresses") or []
    if not isinstance(addresses, list) or not all(isinstance(a, dict) for a in addresses):
        raise _Unmappable(f"{path}.addresses is not a list of objects")
    pools: list[_Pool] = []
    for i, entry in enumerate(addresses):
        at = f"{path}.addresses[{i}]"
        _only(entry, {"address", "gateway"}, at)
        iface = _interface(entry.get("address"))
        if iface is None:
            raise _Bad(
                f"{at}.address",
                f"must be an address with its prefix length like 198.51.100.10/24, "
                f"got {show(entry.get('address'))}",
            )
        values: dict[str, Any] = {"subnet": str(iface.network), "rangeStart": str(iface.ip)}
        values |= {"rangeEnd": str(iface.ip), "exclude": None, "gateway": entry.get("gateway")}
        origins = dict.fromkeys(("subnet", "rangeStart", "rangeEnd"), f"{at}.address")
        pools.append(_pool(values, {**origins, "gateway": f"{at}.gateway"}))
    if len({p.version for p in pools}) < len(pools):
        raise _Unmappable(
            f"{path}.addresses: static IPAM gives every pod all of its addresses, a multinet pool "
            "one address per family"
        )
    if pools:
        mapped.notes.append(
            f"{path}.addresses: each static address becomes a pool of that one address, held by "
            "one pod at a time across the cluster (Multus gave every pod the same address); give "
            "pods addresses of their own with ips, or widen the pool"
        )
    return pools


def _host_local(raw: dict[str, Any], path: str, mapped: _Mapped) -> list[_Pool]:
    _only(raw, _HOST_LOCAL_KEYS, path)
    ranges: list[tuple[dict[str, Any], str]] = []
    if "subnet" in raw:
        ranges.append(({k: raw.get(k) for k in _HOST_LOCAL_RANGE_KEYS}, path))
    elif _HOST_LOCAL_RANGE_KEYS & raw.keys():
        raise _Unmappable(f"{path}: rangeStart, rangeEnd or gateway without subnet")
    sets = raw.get("ranges", [])
    if not isinstance(sets, list):
        raise _Unmappable(f"{path}.ranges is not a list")
    for i, rset in enumerate(sets):
        if not (isinstance(rset, list) and len(rset) == 1 and isinstance(rset[0], dict)):
            raise _Unmappable(
                f"{path}.ranges[{i}] is not a range set of one range; multinet's pool of a "
                "family is one subnet"
            )
        _only(rset[0], _HOST_LOCAL_RANGE_KEYS, f"{path}.ranges[{i}][0]")
        ranges.append((rset[0], f"{path}.ranges[{i}][0]"))
    dropped = sorted({"dataDir", "resolvConf"} & raw.keys())
    if dropped:
        mapped.notes.append(
            f"{path}: {', '.join(dropped)} dropped: host-local's files on each node; multinet "
            "reserves addresses in the cluster (IPReservation objects)"
        )
    return [_host_local_pool(rng, at) for rng, at in ranges]


def _host_local_pool(rng: dict[str, Any], at: str) -> _Pool:
    values = {k: rng.get(k) for k in ("subnet", "rangeStart", "rangeEnd", "gateway")}
    origins = {k: f"{at}.{k}" for k in values}
    net = _network(values["subnet"])
    if values["gateway"] is None and net is not None and net.num_addresses > 2:
        values["gateway"] = str(net.network_address + 1)  # host-local's default gateway
        origins["gateway"] = f"{at}.subnet"
    return _pool({**values, "exclude": None}, origins)


def _whereabouts(raw: dict[str, Any], path: str, mapped: _Mapped) -> list[_Pool]:
    _only(raw, _WHEREABOUTS_KEYS | _WHEREABOUTS_OPERATIONAL, path)
    ranges: list[tuple[dict[str, Any], str]] = []
    if "range" in raw:
        ranges.append((raw, path))
    elif {"range_start", "range_end", "exclude"} & raw.keys():
        raise _Unmappable(f"{path}: range_start, range_end or exclude without range")
    extra = raw.get("ipRanges", [])
    if not isinstance(extra, list) or not all(isinstance(r, dict) for r in extra):
        raise _Unmappable(f"{path}.ipRanges is not a list of objects")
    for i, rng in enumerate(extra):
        _only(rng, _WHEREABOUTS_RANGE_KEYS, f"{path}.ipRanges[{i}]")
        ranges.append((rng, f"{path}.ipRanges[{i}]"))
    pools = [_whereabouts_pool(rng, at) for rng, at in ranges]
    if "gateway" in raw:
        _assign_gateway(raw["gateway"], f"{path}.gateway", pools)
    dropped = sorted(_WHEREABOUTS_OPERATIONAL & raw.keys())
    if dropped:
        mapped.notes.append(
            f"{path}: {', '.join(dropped)} dropped: whereabouts' own storage and tuning; "
            "multinet reserves addresses as IPReservation objects, unique across all PodNetworks"
        )
    return pools


def _whereabouts_pool(rng: dict[str, Any], at: str) -> _Pool:
    text = rng.get("range")
    values = {"subnet": text, "rangeStart": rng.get("range_start")}
    values |= {"rangeEnd": rng.get("range_end"), "exclude": rng.get("exclude"), "gateway": None}
    origins = {"subnet": f"{at}.range", "rangeStart": f"{at}.range_start"}
    origins |= {"rangeEnd": f"{at}.range_end", "exclude": f"{at}.exclude"}
    if isinstance(text, str):
        first, dash, cidr = text.partition("-")
        if dash:  # "A-B/len": the range A..B of B's network
            values |= {"rangeStart": first, "rangeEnd": cidr.split("/")[0]}
            origins |= {"rangeStart": f"{at}.range", "rangeEnd": f"{at}.range"}
        net = _network(cidr if dash else text)
        if net is not None:
            values["subnet"] = str(net)  # whereabouts takes the network of a host address
    return _pool(values, origins)


def _assign_gateway(gateway: Any, at: str, pools: list[_Pool]) -> None:
    if not pools:
        raise _Unmappable(f"{at} without a range")
    address = _address(gateway)
    version = address.version if address is not None else None
    pool = next((p for p in pools if p.version == version), pools[0])
    pool.values["gateway"] = gateway
    pool.origins["gateway"] = at


def _as_cni(
    config: dict[str, Any], plugins: list[tuple[dict[str, Any], str]], reason: str
) -> _Mapped:
    mapped = _Mapped()
    first, path = plugins[0] if plugins else ({}, "spec.config")
    _interfaces(first, "device" if "device" in first else "master", path, mapped)
    mapped.set("mode", "cni", f"{path}.type")
    mapped.set("cni", {"config": config}, "spec.config")
    mapped.origins["cni.config"] = "spec.config"
    if reason:
        mapped.notes.append(f"kept as mode: cni: {reason}")
    gateways: set[IPAddress] = set()
    for plugin, at in plugins:
        scratch = _Mapped()
        try:
            _ipam(plugin.get("ipam"), f"{at}.ipam", scratch)
        except (_Unmappable, _Bad):
            continue
        gateways |= set(scratch.gateways.values())
    mapped.cni_gateways = frozenset(gateways)
    return mapped


def _network(value: Any) -> IPNetwork | None:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def _address(value: Any) -> IPAddress | None:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _interface(value: Any) -> IPInterface | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        return None


def _explain(
    errors: Iterable[str], prefix: str, mapped: _Mapped | dict[str, str], what: str
) -> list[str]:
    """Validation messages pointed at the input field each value came from."""
    origins = mapped.origins if isinstance(mapped, _Mapped) else mapped
    out: list[str] = []
    for message in errors:
        path, _, rule = message.partition(": ")
        rel = path[len(prefix) :].lstrip(".") if path.startswith(prefix) else None
        origin = _origin(rel, origins) if rel is not None else None
        out.append(f"{origin}: {rule} ({what}: {path})" if origin else f"{what}: {message}")
    return out


def _origin(rel: str, origins: dict[str, str]) -> str | None:
    """The input field behind parameter path ``rel``: its longest known prefix's, plus the rest."""
    best = ""
    for key in origins:
        if (rel == key or rel.startswith((key + ".", key + "["))) and len(key) > len(best):
            best = key
    if not best:
        return None
    return origins[best] + rel[len(best) :]


# --- workloads -> ResourceClaimTemplates -----------------------------------------------------


def _add_workload(
    src: Source,
    networks: dict[tuple[str, str], _Network | None],
    result: Result,
    errors: list[str],
) -> None:
    try:
        template, where = _pod_template(src)
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        value = annotations.get(ANNOTATION) if isinstance(annotations, dict) else None
        if value is None:
            result.notes.append(f"{src.label}: has no {ANNOTATION} annotation: nothing to do")
            return
        attachments = _parse_annotation(value, where, src.namespace or "default")
        _check_attachments(attachments)
    except _Bad as exc:
        errors.append(f"{src.label}: {exc}")
        return
    template_name = f"{src.name}-{CLAIM_NAME}"
    before = len(errors)
    requests: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    for att in attachments:
        net = _network_for(att, networks, src, errors)
        if net is not None:
            entry = _request(src, att, net, template_name, result, errors)
            if entry is not None:
                requests.append(entry[0])
                configs.append(entry[1])
    if len(errors) > before:
        return
    body = _claim_template(src, template_name, requests, configs)
    result.documents.append(Document(_pod_comments(src, template, template_name), body))


def _pod_template(src: Source) -> tuple[dict[str, Any], str]:
    """The pod template and the path of its annotation, for messages."""
    node: Any = src.body
    for key in POD_TEMPLATES[src.kind]:
        node = node.get(key) if isinstance(node, dict) else None
    path = ".".join(POD_TEMPLATES[src.kind])
    if not isinstance(node, dict):
        raise _Bad(path, "is required (the pod template)")
    prefix = f"{path}." if path else ""
    return node, f'{prefix}metadata.annotations["{ANNOTATION}"]'


def _parse_annotation(value: Any, where: str, namespace: str) -> list[_Attachment]:
    """The entries of a networks annotation, in either of Multus' forms."""
    if not isinstance(value, str):
        raise _Bad(where, f"must be a string, got {show(value)}")
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise _Bad(where, f"is not valid JSON: {exc}") from None
        return [_json_entry(item, i, where, namespace) for i, item in enumerate(items)]
    if text.startswith("{"):
        raise _Bad(where, "must be a JSON list ([{...}, ...]) or comma-separated names")
    parts = [part.strip() for part in text.split(",") if part.strip()]
    return [_comma_entry(part, i, where, namespace) for i, part in enumerate(parts)]


def _comma_entry(text: str, position: int, where: str, namespace: str) -> _Attachment:
    ref, at, ifname = text.partition("@")
    ns, slash, name = ref.rpartition("/")
    at_where = f"{where}[{position}]"
    if "/" in ns or not name or (slash and not ns) or (at and not ifname) or "@" in ifname:
        raise _Bad(
            at_where,
            "must be name, namespace/name, name@interface or namespace/name@interface, "
            f"got {show(text)}",
        )
    return _Attachment(position, at_where, ns or namespace, name, ifname or None, {})


def _json_entry(item: Any, position: int, where: str, namespace: str) -> _Attachment:
    at = f"{where}[{position}]"
    if not isinstance(item, dict):
        raise _Bad(at, f"must be an object with name, got {show(item)}")
    unknown = sorted(str(k) for k in item if k not in _ELEMENT_KEYS)
    if unknown:
        raise _Bad(
            f"{at}.{unknown[0]}",
            "has no multinet equivalent (claim config: interfaceName, addresses, mac, "
            "defaultRoute); put it into the NAD's CNI config, which then stays mode: cni",
        )
    for key in ("name", "namespace", "interface"):
        value = item.get(key)
        if (key == "name" or value is not None) and not (isinstance(value, str) and value):
            raise _Bad(f"{at}.{key}", f"must be a non-empty string, got {show(value)}")
    return _Attachment(
        position, at, item.get("namespace") or namespace, item["name"], item.get("interface"), item
    )


def _check_attachments(attachments: list[_Attachment]) -> None:
    seen: dict[str, _Attachment] = {}
    for att in attachments:
        other = seen.setdefault(att.pod_ifname, att)
        if other is not att:
            raise _Bad(
                att.where,
                f"interface {att.pod_ifname} is also {other.where}'s; give each its own",
            )
    routed = [a for a in attachments if a.element.get("default-route")]
    if len(routed) > 1:
        raise _Bad(
            routed[1].where,
            f"default-route is also set on {routed[0].where}; a pod has one default route",
        )


def _network_for(
    att: _Attachment,
    networks: dict[tuple[str, str], _Network | None],
    src: Source,
    errors: list[str],
) -> _Network | None:
    key = (att.namespace, att.name)
    if key not in networks:
        errors.append(
            f"{src.label}: {att.where}: refers to {NAD_KIND} {att.namespace}/{att.name}, which is "
            "not in the input; convert it together with the NADs it uses"
        )
        return None
    return networks[key]  # None: the NAD failed, and that error is reported already


def _request_name(att: _Attachment) -> str:
    name = att.pod_ifname
    return name if _DNS_LABEL.match(name) else f"nic{att.position}"


def _request(
    src: Source,
    att: _Attachment,
    net: _Network,
    template_name: str,
    result: Result,
    errors: list[str],
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    request = _request_name(att)
    try:
        config, origins = _claim_config(att, net, src, result)
    except _Bad as exc:
        errors.append(f"{src.label}: {exc}")
        return None
    what = f"claim config of request {request} in ResourceClaimTemplate {template_name}"
    try:
        claimconfig.parse(config, prefix="config[0]")
        claimconfig.effective_config(
            net.parsed,
            [],
            [claimconfig.OpaqueConfig(config, 0, (request,))],
            claim=f"{src.namespace or 'default'}/{template_name}",
            request=request,
        )
    except ConfigError as exc:
        errors += [f"{src.label}: {e}" for e in _explain(exc.errors, "config[0]", origins, what)]
        return None
    if problem := _sysctl_problem(att, net):
        errors.append(f"{src.label}: {att.where}: {problem}")
        return None
    entry = {"name": request, "exactly": {"deviceClassName": net.name}}
    opaque = {"driver": names.DRIVER, "parameters": config}
    return entry, {"requests": [request], "opaque": opaque}


def _claim_config(
    att: _Attachment, net: _Network, src: Source, result: Result
) -> tuple[dict[str, Any], dict[str, str]]:
    config: dict[str, Any] = {"interfaceName": att.pod_ifname}
    origins = {"interfaceName": att.interface_origin}
    if "ips" in att.element:
        config["addresses"] = att.element["ips"]
        origins["addresses"] = f"{att.where}.ips"
    if "mac" in att.element:
        config["mac"] = att.element["mac"]
        origins["mac"] = f"{att.where}.mac"
    elif net.mapped.mac is not None:
        config["mac"], origins["mac"] = net.mapped.mac
    gateways = att.element.get("default-route")
    if gateways is None or gateways == []:
        return config, origins  # Multus: an empty list keeps the CNI result's routes
    where = f"{att.where}.default-route"
    if not isinstance(gateways, list) or not all(isinstance(g, str) for g in gateways):
        raise _Bad(where, f"must be a list of gateway addresses, got {show(gateways)}")
    config["defaultRoute"] = True
    origins["defaultRoute"] = where
    if net.parsed.mode == "cni":
        _cni_default_route(gateways, net, where, src, result)
    elif routes := _default_routes(gateways, net, where):
        config["routes"] = routes
        origins["routes"] = where
    return config, origins


def _gateway(text: str, where: str) -> IPAddress:
    address = _address(text)
    if address is None:
        raise _Bad(where, f"{show(text)} is not an IP address")
    return address


def _default_routes(gateways: list[str], net: _Network, where: str) -> list[dict[str, Any]]:
    """The claim's routes when its default route needs another gateway than the network's:
    the network's routes (a claim's routes replace them) with that default route instead."""
    added: dict[int, dict[str, Any]] = {}
    for text in gateways:
        gateway = _gateway(text, where)
        if gateway.version in added:
            raise _Bad(where, "has two gateways of one family; a pod has one default route each")
        if not _routes_via(net.parsed, gateway):
            added[gateway.version] = {
                "destination": DEFAULT_DESTINATION[gateway.version],
                "gateway": text,
            }
    if not added:
        return []
    own = net.mapped.params.get("routes", [])
    kept = [
        raw
        for raw, route in zip(own, net.parsed.routes, strict=True)
        if not (_is_main_default(route) and route.destination.version in added)
    ]
    return kept + list(added.values())


def _is_main_default(route: policy.Route) -> bool:
    return route.destination.prefixlen == 0 and route.table_number == policy.MAIN_TABLE


def _routes_via(params: NetworkParameters, gateway: IPAddress) -> bool:
    """Whether defaultRoute alone routes through ``gateway`` (as ``multinet.planning`` picks)."""
    defaults = [
        r.gateway
        for r in params.routes
        if _is_main_default(r)
        and r.gateway is not None
        and r.destination.version == gateway.version
    ]
    if defaults:
        return defaults[0] == gateway
    pool = params.ipam.pool_for(gateway.version)
    return pool is not None and pool.gateway == gateway


def _cni_default_route(
    gateways: list[str], net: _Network, where: str, src: Source, result: Result
) -> None:
    known = net.mapped.cni_gateways
    for text in gateways:
        gateway = _gateway(text, where)
        if known and gateway not in known:
            listed = ", ".join(sorted(str(g) for g in known))
            raise _Bad(
                where,
                f"{text} is not the gateway the NAD's CNI IPAM names ({listed}); in mode cni "
                "multinet routes through the gateway of the CNI result: set it there",
            )
    if not known:
        result.warnings.append(
            f"{src.label}: {where}: the CNI config of {net.source.label} names no gateway; in "
            "mode cni multinet's default route goes "
            f"through the gateway of the CNI result, which must then be {', '.join(gateways)}"
        )


def _sysctl_problem(att: _Attachment, net: _Network) -> str | None:
    for key in net.parsed.sysctls:
        _, ifname = policy.sysctl_path(key)
        if ifname is not None and ifname not in (att.pod_ifname, *policy.SYSCTL_ALL_INTERFACES):
            origin = net.mapped.origins.get(f"sysctls.{key}", "spec.config")
            return (
                f"the pod interface is {att.pod_ifname}, but {net.source.label} sets sysctl "
                f"{key} ({origin}) of interface {ifname}: name the interface {ifname} here"
            )
    return None


def _claim_template(
    src: Source, name: str, requests: list[dict[str, Any]], configs: list[dict[str, Any]]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if src.namespace:
        metadata["namespace"] = src.namespace
    return {
        "apiVersion": names.RESOURCE_API,
        "kind": "ResourceClaimTemplate",
        "metadata": metadata,
        "spec": {"spec": {"devices": {"requests": requests, "config": configs}}},
    }


def _pod_comments(src: Source, template: dict[str, Any], name: str) -> tuple[str, ...]:
    spec = template.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    found = [c["name"] for c in containers or [] if isinstance(c, dict) and "name" in c]
    which = f"container {found[0]}" if len(found) == 1 else "each container"
    if len(found) > 1:
        which += f" ({', '.join(found)})"
    spec_path = ".".join((*POD_TEMPLATES[src.kind], "spec"))
    return (
        f"For {src.label}: replaces its {ANNOTATION} annotation; remove that",
        f"and add to {spec_path}:",
        "  resourceClaims:",
        f"    - name: {CLAIM_NAME}",
        f"      resourceClaimTemplateName: {name}",
        f"and to {which}:",
        "  resources:",
        f"    claims: [{{name: {CLAIM_NAME}}}]",
    )


# --- output --------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Writes a value used twice twice, never as an anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(result: Result) -> str:
    """The documents as YAML, each after ``---`` and its comment lines."""
    out: list[str] = []
    for doc in result.documents:
        out.append("---\n")
        out += [f"# {line}\n" for line in doc.comments]
        out.append(yaml.dump(doc.body, Dumper=_Dumper, sort_keys=False, default_flow_style=False))
    return "".join(out)
