"""A CNI network config or conflist, validated into a `Chain` of plugin configs. Pure, no I/O.

Accepted: what a Multus NetworkAttachmentDefinition's `spec.config` holds, as a JSON object:
either one plugin config (it has `type`) or a conflist (it has `plugins`, a non-empty list of
plugin configs). `cniVersion` is required and must be one we speak; `name` may be left out, then
the caller's default (the PodNetwork's name) is the network name. Every plugin's `type`, and its
`ipam.type` when it has `ipam`, must be a plain file name: it is looked up in the CNI bin dirs,
so a path would let a PodNetwork run any executable on the node.

Every problem is reported at once, as `ConfigError` messages naming the field, e.g.
`cni.config.plugins[1].type: is required`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from multinet.api.problems import join_path, show
from multinet.errors import ConfigError

PREFIX = "cni.config"

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

# The spec's rule for a network name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_NAME_RULE = "must be a letter or digit followed by letters, digits, '_', '.' or '-'"


@dataclass(frozen=True)
class Chain:
    """The plugins to run, in ADD order, with the network's name and CNI version.

    `plugins` are the plugin configs as written (a single-plugin config without its `name` and
    `cniVersion`, which every execution gets from the chain). Do not mutate them.
    """

    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    disable_check: bool = False

    def document(self) -> dict[str, Any]:
        """The chain as a conflist: what the cache stores, and `parse_chain` reads back."""
        doc: dict[str, Any] = {
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": copy.deepcopy(list(self.plugins)),
        }
        if self.disable_check:
            doc["disableCheck"] = True
        return doc


def version_at_least(version: str, minimum: str) -> bool:
    """Whether the dotted `version` is `minimum` or later (both among SUPPORTED_VERSIONS)."""
    return _numbers(version) >= _numbers(minimum)


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def parse_chain(config: Any, *, name: str = "", prefix: str = PREFIX) -> Chain:
    """Validate `config` (a decoded JSON object) into a Chain, or raise ConfigError.

    `name` is the network name used when the config has none (the PodNetwork's name).
    """
    if not isinstance(config, Mapping):
        raise ConfigError([f"{prefix}: must be an object, got {show(config)}"])
    problems = _serialisable(config, prefix)
    if problems:
        raise ConfigError(problems)
    version = _version(config, prefix, problems)
    network = _name(config, name, prefix, problems)
    plugins = _plugins(config, prefix, problems)
    disable_check = _disable_check(config, prefix, problems)
    if problems:
        raise ConfigError(problems)
    return Chain(network, version, plugins, disable_check)


def _serialisable(config: Mapping[str, Any], prefix: str) -> list[str]:
    # Every execution serialises the config to the plugin's stdin and into the cache.
    try:
        json.dumps(config)
    except (TypeError, ValueError, RecursionError) as exc:
        return [f"{prefix}: must be plain JSON ({type(exc).__name__}: {str(exc)[:80]})"]
    return []


def _version(config: Mapping[str, Any], prefix: str, problems: list[str]) -> str:
    value = config.get("cniVersion")
    where = f"{prefix}.cniVersion"
    if value is None:
        problems.append(f"{where}: is required")
    elif value not in SUPPORTED_VERSIONS:
        problems.append(
            f"{where}: must be one of {', '.join(SUPPORTED_VERSIONS)}, got {show(value)}"
        )
    return value if isinstance(value, str) else ""


def _name(config: Mapping[str, Any], default: str, prefix: str, problems: list[str]) -> str:
    value = config.get("name", default or None)
    where = f"{prefix}.name"
    if value is None:
        problems.append(f"{where}: is required")
        return ""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        problems.append(f"{where}: {_NAME_RULE}, got {show(value)}")
        return ""
    return value


def _disable_check(config: Mapping[str, Any], prefix: str, problems: list[str]) -> bool:
    # The spec writes it as a string ("true"/"false"); libcni also takes a JSON boolean.
    value = config.get("disableCheck", False)
    if value in (True, "true"):
        return True
    if value not in (False, "false"):
        problems.append(f"{prefix}.disableCheck: must be true or false, got {show(value)}")
    return False


def _plugins(
    config: Mapping[str, Any], prefix: str, problems: list[str]
) -> tuple[dict[str, Any], ...]:
    has_type, has_plugins = "type" in config, "plugins" in config
    if has_type and has_plugins:
        problems.append(
            f"{prefix}: has both type (one plugin) and plugins (a list); "
            "in a conflist each plugin carries its own type"
        )
        return ()
    if has_type:
        plugin = {k: copy.deepcopy(v) for k, v in config.items() if k not in ("name", "cniVersion")}
        problems.extend(plugin_problems(plugin, prefix))
        return (plugin,)
    if not has_plugins:
        problems.append(f"{prefix}: needs type (one plugin) or plugins (a list of plugins)")
        return ()
    raw = config["plugins"]
    where = f"{prefix}.plugins"
    if not isinstance(raw, list):
        problems.append(f"{where}: must be a list, got {show(raw)}")
        return ()
    if not raw:
        problems.append(f"{where}: must have at least 1 item")
    plugins = []
    for i, item in enumerate(raw):
        at = join_path((where, i))
        if not isinstance(item, Mapping):
            problems.append(f"{at}: must be an object, got {show(item)}")
            continue
        problems.extend(plugin_problems(item, at))
        plugins.append(copy.deepcopy(dict(item)))
    return tuple(plugins)


def plugin_problems(plugin: Mapping[str, Any], where: str) -> list[str]:
    """What is wrong with one plugin config: its type, its IPAM plugin's type, capabilities."""
    problems = _type_problems(plugin.get("type"), f"{where}.type")
    ipam = plugin.get("ipam")
    if ipam is not None:
        if isinstance(ipam, Mapping):
            problems += _type_problems(ipam.get("type"), f"{where}.ipam.type")
        else:
            problems.append(f"{where}.ipam: must be an object, got {show(ipam)}")
    capabilities = plugin.get("capabilities")
    if capabilities is not None and not (
        isinstance(capabilities, Mapping)
        and all(isinstance(v, bool) for v in capabilities.values())
    ):
        problems.append(
            f"{where}.capabilities: must be an object of true/false, got {show(capabilities)}"
        )
    return problems


def _type_problems(value: Any, where: str) -> list[str]:
    if value is None:
        return [f"{where}: is required"]
    if not isinstance(value, str):
        return [f"{where}: must be a string, got {show(value)}"]
    if not value or "/" in value or ".." in value or "\0" in value or value == ".":
        return [f"{where}: must be a plain file name (no '/', no '..'), got {show(value)}"]
    return []
