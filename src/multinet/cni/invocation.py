"""What one plugin execution gets: its stdin config and its environment. Pure, no I/O.

The stdin config (the spec's "execution configuration") is the plugin's config with the chain's
`name` and `cniVersion`, without `capabilities`, plus:

- `prevResult`: in an ADD, the previous plugin's result (plugins after the first); in a DEL or
  CHECK, the result the whole ADD returned, from cniVersion 0.4.0 on (0.3.x plugins know no
  prevResult in DEL and have no CHECK). Left out of a DEL that has none (a crash mid-ADD): the
  spec allows that and plugins then clean up by name.
- `runtimeConfig`: one entry per capability the plugin declares (`"capabilities": {"mac": true}`)
  that the caller has a value for; a `runtimeConfig` in the config itself is kept underneath.
- the claim's device, where the plugin would otherwise pick an interface itself or fail:
  `master` of macvlan, ipvlan and vlan (macvlan and ipvlan otherwise take the interface of the
  default route), and `device` of host-device when the config names no device of its own
  (`device`, `hwaddr`, `kernelpath`, `pciBusID`) and no `runtimeConfig.deviceID` is passed.

`runtimeConfig.deviceID` comes only from `RuntimeArgs.device_id`, never from the interface name:
the plugins that read it (host-device, sriov) take it as a PCI address.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from multinet.cni.config import Chain, version_at_least

Command = Literal["ADD", "DEL", "CHECK"]

_MASTER_TYPES = ("macvlan", "ipvlan", "vlan")
_HOST_DEVICE_KEYS = ("device", "hwaddr", "kernelpath", "pciBusID")
# The spec's rule for a container ID, and what the kernel takes as an interface name.
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_IFNAME = re.compile(r"[^/:\s]{1,15}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PodRef(_Frozen):
    """The pod an attachment is for, as CNI_ARGS tells the plugins (K8S_POD_*)."""

    namespace: str
    name: str
    uid: str


class RuntimeArgs(_Frozen):
    """Values for the conventional capabilities; each goes to the plugins that declare it."""

    mac: str | None = None  # capability "mac"
    ips: tuple[str, ...] = ()  # "ips": addresses in CIDR form
    device_id: str | None = None  # "deviceID": a PCI address
    bandwidth: dict[str, int] | None = None  # "bandwidth": ingressRate, ingressBurst, egress...
    port_mappings: tuple[dict[str, Any], ...] = ()  # "portMappings"
    infiniband_guid: str | None = None  # "infinibandGUID"

    def capabilities(self) -> dict[str, Any]:
        """Capability name -> value, for the values that are set, as JSON."""
        values: dict[str, Any] = {
            "mac": self.mac,
            "ips": list(self.ips),
            "deviceID": self.device_id,
            "bandwidth": dict(self.bandwidth) if self.bandwidth is not None else None,
            "portMappings": [dict(p) for p in self.port_mappings],
            "infinibandGUID": self.infiniband_guid,
        }
        return {k: v for k, v in values.items() if v not in (None, [])}


def passes_prev_result(chain: Chain, index: int, command: Command) -> bool:
    """Whether plugin `index` gets a prevResult in `command` (when there is one to give)."""
    if command == "ADD":
        return index > 0
    return version_at_least(chain.cni_version, "0.4.0")


def plugin_stdin(
    chain: Chain,
    index: int,
    *,
    command: Command,
    device: str | None,
    runtime: RuntimeArgs,
    prev_result: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The JSON object plugin `index` of `chain` reads on stdin for `command`.

    `prev_result`: in an ADD the previous plugin's result, in a DEL or CHECK the cached result
    of the whole ADD (None when there is none); given or not, it goes only where the spec says.
    """
    plugin = chain.plugins[index]
    conf = {
        k: copy.deepcopy(v)
        for k, v in plugin.items()
        if k not in ("capabilities", "runtimeConfig", "prevResult")
    }
    conf["name"] = chain.name
    conf["cniVersion"] = chain.cni_version
    runtime_config = _runtime_config(plugin, runtime)
    if runtime_config:
        conf["runtimeConfig"] = runtime_config
    if device:
        _fill_device(conf, device, runtime_config)
    if prev_result is not None and passes_prev_result(chain, index, command):
        conf["prevResult"] = copy.deepcopy(dict(prev_result))
    return conf


def _runtime_config(plugin: Mapping[str, Any], runtime: RuntimeArgs) -> dict[str, Any]:
    own = plugin.get("runtimeConfig")
    merged = copy.deepcopy(dict(own)) if isinstance(own, Mapping) else {}
    declared = plugin.get("capabilities")
    if isinstance(declared, Mapping):
        for name, value in runtime.capabilities().items():
            if declared.get(name) is True:
                merged[name] = value
    return merged


def _fill_device(conf: dict[str, Any], device: str, runtime_config: Mapping[str, Any]) -> None:
    kind = conf.get("type")
    if kind in _MASTER_TYPES:
        if not conf.get("master"):
            conf["master"] = device
    elif kind == "host-device":
        named = any(conf.get(k) for k in _HOST_DEVICE_KEYS) or runtime_config.get("deviceID")
        if not named:
            conf["device"] = device


def cni_args(pod: PodRef, container_id: str) -> str:
    """CNI_ARGS as the kubelet's runtimes pass it (plugins that know none of it ignore it)."""
    return (
        f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod.namespace};K8S_POD_NAME={pod.name};"
        f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={pod.uid}"
    )


def plugin_env(
    *,
    command: Command,
    container_id: str,
    netns: str,
    ifname: str,
    pod: PodRef,
    bin_dirs: Sequence[str],
    path: str,
) -> dict[str, str]:
    """The whole environment of a plugin: the CNI variables and PATH (for the tools plugins run,
    such as iptables), nothing else of the agent's."""
    return {
        "PATH": path,
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": cni_args(pod, container_id),
        "CNI_PATH": ":".join(bin_dirs),
    }


def invocation_problems(
    *, container_id: str, ifname: str, pod: PodRef, bin_dirs: Sequence[str]
) -> list[str]:
    """What would make every plugin reject the execution, or garble its environment."""
    problems = []
    if not _CONTAINER_ID.fullmatch(container_id):
        problems.append(
            f"container ID {container_id!r}: a letter or digit, then letters, digits, '_.-'"
        )
    if not _IFNAME.fullmatch(ifname) or ifname in (".", ".."):
        problems.append(f"ifname {ifname!r}: 1-15 characters, no '/', ':' or space")
    for field, value in (("namespace", pod.namespace), ("name", pod.name), ("uid", pod.uid)):
        if ";" in value or "=" in value:
            problems.append(f"pod {field} {value!r}: no ';' or '=' (CNI_ARGS separators)")
    if not bin_dirs:
        problems.append("bin dirs: at least one directory to find plugins in")
    for d in bin_dirs:
        if not d.startswith("/") or ":" in d:
            problems.append(f"bin dir {d!r}: an absolute path without ':'")
    return problems
