"""Every command-line flag of both programs, declared once: flag, env var, default, help text.

`multinet controller` and `multinet node-agent` build their argparse parsers from these tables,
`--help` shows each flag's env var and default from them, and README.md's "### Flags" section is
rendered from them (`python -m multinet.settings` prints it; a unit test keeps the README equal).
A new flag is one `Flag(...)` line here plus the field that reads it.

pydantic-settings would do the env part, but not argparse, the `--help` text or the README; one
table in plain Python does all three with nothing to install.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Value = str | int | float


@dataclass(frozen=True)
class Flag:
    """One flag: `--<name>`, read from `env` when the flag is not given, else `default`."""

    name: str
    env: str
    #: The default as text (how it reads in an env var); a callable for one known only at run time.
    default: str | Callable[[], str]
    help: str
    type: Callable[[str], Value] = str
    choices: tuple[str, ...] = ()
    #: How the default reads in --help and the README when the text itself says nothing useful.
    default_doc: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def documented_default(self) -> str:
        if self.default_doc is not None:
            return self.default_doc
        if callable(self.default):
            raise ValueError(f"--{self.name} has a run-time default and needs a default_doc")
        return self.default

    def value(self) -> Value:
        """The env var's value if set, else the default, converted like a flag's value."""
        raw = os.environ.get(self.env)
        if raw is None:
            raw = self.default() if callable(self.default) else self.default
        return self.type(raw)

    def help_text(self) -> str:
        default = self.documented_default()
        return f"{self.help} [env {self.env}, default {default or 'empty'}]"


COMMON: tuple[Flag, ...] = (
    Flag(
        "kubeconfig",
        "KUBECONFIG",
        "",
        "kubeconfig file; empty means in-cluster config",
    ),
    Flag(
        "log-level",
        "MULTINET_LOG_LEVEL",
        "info",
        "minimum level logged",
        choices=("debug", "info", "warning", "error"),
    ),
    Flag(
        "log-format",
        "MULTINET_LOG_FORMAT",
        "text",
        "text for people, json (one object a line) for collectors",
        choices=("text", "json"),
    ),
)

CONTROLLER: tuple[Flag, ...] = (
    Flag(
        "health-port",
        "MULTINET_HEALTH_PORT",
        "8080",
        "port of the liveness endpoint /healthz; 0 disables",
        type=int,
    ),
    Flag(
        "leader-elect",
        "MULTINET_LEADER_ELECT",
        "true",
        "hold a Lease so only one replica reconciles; false only for a single replica",
        choices=("true", "false"),
    ),
    Flag(
        "namespace",
        "MULTINET_NAMESPACE",
        "multinet-system",
        "namespace of the leader-election Lease (the controller's own)",
    ),
    Flag(
        "lease-name",
        "MULTINET_LEASE_NAME",
        "multinet-controller",
        "name of the leader-election Lease",
    ),
    Flag(
        "recheck-interval",
        "MULTINET_RECHECK_INTERVAL",
        "10",
        "seconds between checks of a PodNetwork whose deletion waits for claims; claim "
        "events trigger a check sooner",
        type=float,
    ),
    Flag(
        "resync-interval",
        "MULTINET_RESYNC_INTERVAL",
        "300",
        "seconds between full passes over all PodNetworks, a safety net for missed events",
        type=float,
    ),
    Flag(
        "ipam-gc-interval",
        "MULTINET_IPAM_GC_INTERVAL",
        "60",
        "seconds between sweeps deleting IP reservations whose claim is gone; 0 disables",
        type=float,
    ),
)

AGENT: tuple[Flag, ...] = (
    Flag(
        "node-name",
        "NODE_NAME",
        socket.gethostname,
        "this node's name",
        default_doc="the hostname",
    ),
    Flag(
        "kubelet-root",
        "MULTINET_KUBELET_ROOT",
        "/var/lib/kubelet",
        "the kubelet's --root-dir",
    ),
    Flag(
        "state-dir",
        "MULTINET_STATE_DIR",
        "/var/lib/multinet",
        "directory of the checkpoint",
    ),
    Flag(
        "cni-bin-dirs",
        "MULTINET_CNI_BIN_DIRS",
        "/opt/cni/bin:/usr/lib/cni",
        "':'-separated directories of the node's CNI plugins (PodNetworks of mode cni)",
    ),
    Flag(
        "cni-timeout",
        "MULTINET_CNI_TIMEOUT",
        "1.5",
        "seconds one CNI command (the whole chain) may take; ADD runs inside the runtime's "
        "~2 s NRI deadline",
        type=float,
    ),
    Flag(
        "nri-socket",
        "MULTINET_NRI_SOCKET",
        "/var/run/nri/nri.sock",
        "containerd's NRI socket",
    ),
    Flag(
        "nri-plugin-name",
        "MULTINET_NRI_PLUGIN_NAME",
        "multinet",
        "name registered with the runtime",
    ),
    Flag(
        "nri-plugin-index",
        "MULTINET_NRI_PLUGIN_INDEX",
        "10",
        "two-digit NRI plugin index",
    ),
    Flag(
        "metrics-address",
        "MULTINET_METRICS_ADDRESS",
        "0.0.0.0",
        "address of /healthz, /readyz, /metrics",
    ),
    Flag(
        "metrics-port",
        "MULTINET_METRICS_PORT",
        "9178",
        "port of /healthz, /readyz, /metrics; 0 disables",
        type=int,
    ),
)

#: The programs and their flags, in the order --help and the README list them.
PROGRAMS: dict[str, tuple[Flag, ...]] = {
    "controller": COMMON + CONTROLLER,
    "node-agent": COMMON + AGENT,
}


def add_flags(parser: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    """Each flag, its default read from its env var now (when the parser is built)."""
    for flag in flags:
        parser.add_argument(
            f"--{flag.name}",
            dest=flag.dest,
            type=flag.type,
            default=flag.value(),
            choices=flag.choices or None,
            help=flag.help_text(),
        )


def _markdown_item(flag: Flag) -> str:
    default = flag.documented_default()
    # A bare | would end the table cell.
    choices = " " + "\\|".join(flag.choices) if flag.choices else ""
    # A default described in words (e.g. "the hostname") is not a value to type.
    shown = default if flag.default_doc is not None else f"`{default}`" if default else "empty"
    return f"| `--{flag.name}{choices}` | `{flag.env}` | {shown} | {flag.help} |"


def render_markdown() -> str:
    """README.md's "### Flags" section, heading excluded."""
    lines = [
        "Generated from `src/multinet/settings.py` (`python -m multinet.settings`); a unit test",
        "keeps it equal. Every flag has an environment variable, read when the flag is not given;",
        "`multinet <command> --help` lists them too.",
    ]
    tables = [
        ("Both programs", COMMON),
        ("`multinet controller`", CONTROLLER),
        ("`multinet node-agent`", AGENT),
    ]
    for title, flags in tables:
        lines += ["", f"{title}:", "", "| flag | env | default | meaning |", "|---|---|---|---|"]
        lines += [_markdown_item(flag) for flag in flags]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
