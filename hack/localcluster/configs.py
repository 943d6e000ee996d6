"""Rendering of every configuration file the components read. Pure: values in, text out."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import layout as L
from .nodes import NodeSpec


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(
    *,
    server: str,
    ca: Path,
    cert: Path | None,
    key: Path | None,
    user: str,
    token: str | None = None,
) -> str:
    """A self-contained kubeconfig (certificates embedded, so a copy works anywhere)."""
    auth: dict[str, str] = {}
    if cert is not None and key is not None:
        auth = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    if token is not None:
        auth["token"] = token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "multinet-local",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [{"name": user, "user": auth}],
        "contexts": [
            {"name": "multinet-local", "context": {"cluster": "multinet-local", "user": user}}
        ],
        "current-context": "multinet-local",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def scheduler_config(kubeconfig_path: Path) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig_path)},
            "leaderElection": {"leaderElect": False},
        },
        sort_keys=False,
    )


def kubelet_config(lay: L.Layout) -> str:
    """KubeletConfiguration of the host node: cgroup v1, no CAP_SYS_RESOURCE, tiny disk headroom."""
    return _kubelet_yaml(
        endpoint=f"unix://{lay.containerd_socket}",
        static_pods=lay.static_pods,
        pod_logs=lay.pod_logs,
        volume_plugins=lay.volume_plugins,
        healthz_address="127.0.0.1",
        serving=lay.pki / "kubelet-serving",
        ca=lay.pki / "ca.crt",
    )


def node_kubelet_config(lay: L.Layout, node: NodeSpec) -> str:
    """KubeletConfiguration of a sandbox node: the host's settings, plus its own cgroup root (two
    kubelets on one machine must not share `kubepods`), health on its own address (the host
    probes it there) and the standard pod log directory (its own, by a bind mount)."""
    nl = lay.node(node.name)
    return _kubelet_yaml(
        endpoint=f"unix://{nl.containerd_socket}",
        static_pods=nl.static_pods,
        pod_logs=Path("/var/log/pods"),
        volume_plugins=nl.volume_plugins,
        healthz_address=node.ip,
        serving=lay.pki / f"kubelet-serving-{node.name}",
        ca=lay.pki / "ca.crt",
        cgroup_root=f"/{L.NODES_CGROUP}/{node.name}",
    )


def _kubelet_yaml(
    *,
    endpoint: str,
    static_pods: Path,
    pod_logs: Path,
    volume_plugins: Path,
    healthz_address: str,
    serving: Path,
    ca: Path,
    cgroup_root: str | None = None,
) -> str:
    doc: dict[str, object] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # 1.35+ refuses cgroup v1 by default; this machine only has v1 controllers.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # Writing a negative oom_score_adj fails without CAP_SYS_RESOURCE.
        "oomScoreAdj": 0,
        "failSwapOn": False,
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        "staticPodPath": str(static_pods),
        "podLogsDir": str(pod_logs),
        "volumePluginDir": str(volume_plugins),
        "address": "0.0.0.0",
        "port": 10250,
        "healthzBindAddress": healthz_address,
        "healthzPort": L.KUBELET_HEALTHZ_PORT,
        "readOnlyPort": 0,
        "clusterDomain": "cluster.local",
        "tlsCertFile": f"{serving}.crt",
        "tlsPrivateKeyFile": f"{serving}.key",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        # Shared disks here are often nearly full: never evict or GC because of disk.
        "evictionHard": {
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
            "imagefs.inodesFree": "0%",
            "memory.available": "100Mi",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "registerNode": True,
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
    }
    if cgroup_root is not None:
        doc["cgroupRoot"] = cgroup_root
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True)
class ContainerdPaths:
    """Where one containerd keeps everything (host node: the state dir; sandbox node: its node
    dir, with NRI and CNI at the standard paths its bind mounts provide)."""

    root: Path
    state: Path
    temp: Path
    opt: Path
    socket: Path
    runc_root: Path
    cni_conf_dir: Path
    nri_socket: Path
    nri_plugins: Path
    nri_plugin_config: Path

    @classmethod
    def of_host(cls, lay: L.Layout) -> ContainerdPaths:
        return cls(
            root=lay.containerd_root,
            state=lay.containerd_state,
            temp=lay.root / "containerd" / "tmp",
            opt=lay.containerd_opt,
            socket=lay.containerd_socket,
            runc_root=lay.runc_root,
            cni_conf_dir=lay.cni_conf_dir,
            nri_socket=lay.nri_socket,
            nri_plugins=lay.nri_plugins,
            nri_plugin_config=lay.nri_plugin_config,
        )

    @classmethod
    def of_node(cls, nl: L.NodeLayout) -> ContainerdPaths:
        return cls(
            root=nl.containerd_root,
            state=nl.containerd_state,
            temp=nl.root / "containerd" / "tmp",
            opt=nl.root / "containerd" / "opt",
            socket=nl.containerd_socket,
            runc_root=nl.runc_root,
            cni_conf_dir=Path("/etc/cni/net.d"),
            nri_socket=Path("/run/nri/nri.sock"),
            nri_plugins=nl.root / "nri" / "plugins",
            nri_plugin_config=nl.root / "nri" / "conf.d",
        )


def containerd_config(paths: ContainerdPaths, *, runc: str, cni_bin_dir: str) -> str:
    """containerd 2.x config version 3: private dirs, NRI on our own socket.

    See docs/architecture.md, protocols 4.6.
    """
    run = paths.socket.parent
    cri_rt = "plugins.'io.containerd.cri.v1.runtime'"
    return f"""\
version = 3
root = "{paths.root}"
state = "{paths.state}"
temp = "{paths.temp}"

[grpc]
  address = "{paths.socket}"

[ttrpc]
  address = "{run / "containerd.sock.ttrpc"}"

[debug]
  address = "{run / "debug.sock"}"

[plugins.'io.containerd.internal.v1.opt']
  path = "{paths.opt}"

[{cri_rt}]
  enable_cdi = true
  # REQUIRED here: no CAP_SYS_RESOURCE, so negative oom_score_adj writes fail.
  restrict_oom_score_adj = true

[{cri_rt}.containerd]
  default_runtime_name = "runc"

[{cri_rt}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri_rt}.containerd.runtimes.runc.options]
  BinaryName = "{runc}"
  # Without Root, runc state goes to its default and ignores containerd's --state.
  Root = "{paths.runc_root}"
  SystemdCgroup = false

[{cri_rt}.cni]
  bin_dirs = ["{cni_bin_dir}"]
  conf_dir = "{paths.cni_conf_dir}"
  max_conf_num = 1

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{L.PAUSE_IMAGE}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.nri.v1.nri']
  disable = false
  socket_path = "{paths.nri_socket}"
  plugin_path = "{paths.nri_plugins}"
  plugin_config_path = "{paths.nri_plugin_config}"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "2s"
"""


def cni_conflist(*, subnet: str = L.POD_SUBNET, data_dir: Path) -> str:
    """bridge + host-local. ipMasq false and no portmap: no iptables needed.

    `lo` is not in the chain: containerd's CRI brings it up itself with the `loopback` plugin from
    the same bin_dirs (a chained loopback would be handed the pod's eth0 as its interface).
    """
    doc = {
        "cniVersion": "1.0.0",
        "name": L.CNI_NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": L.BRIDGE_NAME,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(data_dir),
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
        ],
    }
    return json.dumps(doc, indent=2) + "\n"
