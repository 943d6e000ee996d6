"""Node agent settings: the values the agent runs with (its flags are in `multinet.settings`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


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
    #: Where `mode: cni` networks find their plugins, and how long one chain may take.
    cni_bin_dirs: tuple[str, ...] = ("/opt/cni/bin", "/usr/lib/cni")
    cni_timeout: float = 1.5


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
        cni_bin_dirs=tuple(d for d in args.cni_bin_dirs.split(":") if d),
        cni_timeout=args.cni_timeout,
    )
