"""Node agent settings: flags, their environment variables, and the values the agent runs with."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class AgentSettings:
    node_name: str
    kubeconfig: str
    #: The kubelet's --root-dir: the plugin sockets live under it (plugins_registry/, plugins/).
    kubelet_root: Path = Path("/var/lib/kubelet")
    #: Where the checkpoint lives; must survive agent restarts (a hostPath in the DaemonSet).
    state_dir: Path = Path("/var/lib/multinet")
    #: containerd's NRI socket; the plugin connects to it and reconnects when it drops.
    nri_socket: Path = Path("/var/run/nri/nri.sock")
    nri_plugin_name: str = "multinet"
    #: Two digits; orders us among NRI plugins.
    nri_plugin_index: str = "10"
    #: /healthz, /readyz, /metrics. 0 disables the endpoint.
    metrics_port: int = 9178
    metrics_address: str = "0.0.0.0"
    #: Seconds to gather bursts of netlink events before republishing slices.
    debounce_seconds: float = 0.2
    #: Safety net: a full inventory re-read this often, in seconds, though events drive everything.
    resync_seconds: float = 300.0


def add_agent_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node-name",
        default=_env("NODE_NAME", socket.gethostname()),
        help="this node's name [env NODE_NAME, default the hostname]",
    )
    parser.add_argument(
        "--kubelet-root",
        default=_env("MULTINET_KUBELET_ROOT", "/var/lib/kubelet"),
        help="the kubelet's --root-dir [env MULTINET_KUBELET_ROOT, default /var/lib/kubelet]",
    )
    parser.add_argument(
        "--state-dir",
        default=_env("MULTINET_STATE_DIR", "/var/lib/multinet"),
        help="directory of the checkpoint [env MULTINET_STATE_DIR, default /var/lib/multinet]",
    )
    parser.add_argument(
        "--nri-socket",
        default=_env("MULTINET_NRI_SOCKET", "/var/run/nri/nri.sock"),
        help="containerd's NRI socket [env MULTINET_NRI_SOCKET, default /var/run/nri/nri.sock]",
    )
    parser.add_argument(
        "--nri-plugin-name",
        default=_env("MULTINET_NRI_PLUGIN_NAME", "multinet"),
        help="name registered with the runtime [env MULTINET_NRI_PLUGIN_NAME, default multinet]",
    )
    parser.add_argument(
        "--nri-plugin-index",
        default=_env("MULTINET_NRI_PLUGIN_INDEX", "10"),
        help="two-digit NRI plugin index [env MULTINET_NRI_PLUGIN_INDEX, default 10]",
    )
    parser.add_argument(
        "--metrics-address",
        default=_env("MULTINET_METRICS_ADDRESS", "0.0.0.0"),
        help="address of /healthz, /readyz, /metrics "
        "[env MULTINET_METRICS_ADDRESS, default 0.0.0.0]",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("MULTINET_METRICS_PORT", "9178")),
        help="port of /healthz, /readyz, /metrics; 0 disables "
        "[env MULTINET_METRICS_PORT, default 9178]",
    )


def settings_from_args(args: argparse.Namespace) -> AgentSettings:
    return AgentSettings(
        node_name=args.node_name,
        kubeconfig=args.kubeconfig,
        kubelet_root=Path(args.kubelet_root),
        state_dir=Path(args.state_dir),
        nri_socket=Path(args.nri_socket),
        nri_plugin_name=args.nri_plugin_name,
        nri_plugin_index=args.nri_plugin_index,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
    )
