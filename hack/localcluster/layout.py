"""Where everything lives: the state directory tree, the binaries, the pinned versions.

Pure path arithmetic, no I/O beyond reading versions.env. The state directory is FIXED (not a temp
dir) so that the debris of a killed run is always found by the next `up` or `down`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The checkout this tool lives in (hack/localcluster/layout.py -> repo root).
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = Path("/var/lib/multinet-localcluster")

#: Names we own on the host: the CNI bridge, the CNI network, the cluster's ports.
BRIDGE_NAME = "mnlc-cni0"
CNI_NETWORK_NAME = "mnlc-pods"
POD_SUBNET = "10.88.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
#: First address of SERVICE_CIDR: the `kubernetes` service; goes into the apiserver's SANs.
KUBERNETES_SERVICE_IP = "10.96.0.1"
APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
KUBELET_HEALTHZ_PORT = 10248
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259

#: Many-node clusters (`up --nodes N`, N >= 2): every node is a sandbox on its own network
#: namespace; the "top-of-rack" bridge joins them to the host (which runs the control plane), the
#: "lab" bridge joins the NICs that `node-nic` gives them. Benchmark range 198.18.0.0/15, its last
#: /24: never this machine's network, and not the per-test ranges the root tests pick.
TOR_BRIDGE = "mnlc-tor"
LAB_BRIDGE = "mnlc-lab"
NODE_SUBNET_PREFIX = "198.18.255"
TOR_GATEWAY = f"{NODE_SUBNET_PREFIX}.1"
#: The cgroup (every v1 hierarchy) under which each sandbox node's kubelet puts its pods.
NODES_CGROUP = "mnlc-nodes"
#: Host paths a sandbox node gets its own copy of (a bind mount in its mount namespace), so
#: deploy/base's hostPath volumes find that node's kubelet, NRI socket, netns and checkpoint.
NODE_PRIVATE_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/multinet",
    "/var/lib/cni",
    "/run/containerd",
    "/run/nri",
    "/run/netns",
    "/etc/cni",
    "/var/log/pods",
    "/var/log/containers",
)

#: The sandbox image containerd 2.1.9 pins by default; we import our own pause under this name.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
TEST_IMAGE = "multinet.dev/test/busybox:local"
#: The multinet image: the Makefile's IMAGE, the image deploy/base names. `python -m
#: localcluster.image build` tags what it builds with it by default.
MULTINET_IMAGE = "ghcr.io/multinet-dev/multinet:0.1.0"


def cache_dir() -> Path:
    return Path(os.environ.get("MULTINET_CACHE", str(Path.home() / ".cache" / "multinet")))


def bin_dir() -> Path:
    """hack/build-binaries.sh links every binary here: `bin/` for the default Kubernetes
    version, `bin-<version>/` for one chosen with K8S_VERSION."""
    version = kubernetes_version()
    if version == pinned_versions()["KUBERNETES_VERSION"]:
        return cache_dir() / "bin"
    return cache_dir() / f"bin-{version}"


def pinned_versions() -> dict[str, str]:
    """hack/k8s/versions.env: the one place the pinned (default) versions are written down."""
    out: dict[str, str] = {}
    for raw in (REPO_ROOT / "hack" / "k8s" / "versions.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def normalize_version(version: str) -> str:
    """ "1.34.4" or "v1.34.4" -> "v1.34.4"; anything else is refused with what is expected."""
    text = version.strip()
    text = text if text.startswith("v") else f"v{text}"
    parts = text[1:].split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or parts[0] != "1":
        raise ValueError(f"K8S_VERSION={version!r}: expected a release like 1.36.3")
    return text


def kubernetes_version() -> str:
    """The Kubernetes version in use: K8S_VERSION when set, else the pinned default."""
    chosen = os.environ.get("K8S_VERSION", "").strip()
    return normalize_version(chosen) if chosen else pinned_versions()["KUBERNETES_VERSION"]


def versions() -> dict[str, str]:
    """The versions in use: the pinned ones, with Kubernetes as K8S_VERSION chooses."""
    out = pinned_versions()
    out["KUBERNETES_VERSION"] = kubernetes_version()
    return out


def state_dir_from_env() -> Path:
    return Path(os.environ.get("MULTINET_CLUSTER_DIR", str(DEFAULT_STATE_DIR)))


@dataclass(frozen=True)
class Layout:
    """Every path under the state directory, in one place."""

    root: Path

    @classmethod
    def from_env(cls) -> Layout:
        return cls(state_dir_from_env())

    # bookkeeping
    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    @property
    def users_lock_file(self) -> Path:
        """Test sessions hold a shared flock on it while they use the cluster."""
        return self.root / "users.lock"

    @property
    def keep_file(self) -> Path:
        """Present when someone asked for the cluster by hand (`python -m localcluster up`):
        test sessions then leave it running at their end. Removed by `down`."""
        return self.root / "keep"

    @property
    def info_file(self) -> Path:
        """cluster.json: node name, node IP, apiserver URL of the running cluster."""
        return self.root / "cluster.json"

    @property
    def sysctls_file(self) -> Path:
        """The sysctl values from before the kubelet first ran; restored by `down`."""
        return self.root / "sysctls.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def accounts(self) -> Path:
        """Kubeconfigs of service accounts handed out by Cluster.service_account_kubeconfig."""
        return self.root / "accounts"

    # components
    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def static_pods(self) -> Path:
        return self.root / "manifests"

    @property
    def volume_plugins(self) -> Path:
        return self.root / "volume-plugins"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_opt(self) -> Path:
        return self.root / "containerd" / "opt"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd" / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.run / "runc"

    @property
    def nri_socket(self) -> Path:
        return self.run / "nri" / "nri.sock"

    @property
    def nri_plugins(self) -> Path:
        return self.root / "nri" / "plugins"

    @property
    def nri_plugin_config(self) -> Path:
        return self.root / "nri" / "conf.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "networks"

    # config files
    @property
    def admin_kubeconfig(self) -> Path:
        return self.config / "admin.kubeconfig"

    @property
    def repo_kubeconfig(self) -> Path:
        """The copy users point KUBECONFIG at (git-ignored)."""
        return REPO_ROOT / ".cluster" / "kubeconfig"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def runtime_dirs(self) -> list[Path]:
        """Directories whose contents die with the processes: wiped by debris cleanup."""
        return [
            self.etcd_data,
            self.kubelet_root,
            self.pod_logs,
            self.containerd_state,
            self.run,
            self.cni_ipam_dir,
            self.accounts,
            # The node agent's checkpoint names claims of this etcd: stale once etcd is wiped.
            self.agent_state,
            # Sandbox nodes: everything but the image store (containerd root) goes.
            *(
                entry
                for node in (self.nodes_dir.iterdir() if self.nodes_dir.is_dir() else ())
                for entry in node.iterdir()
                if entry.name != "containerd"
            ),
            *self.nodes_dir.glob("*/containerd/state"),
            *self.nodes_dir.glob("*/containerd/run"),
        ]

    @property
    def nodes_dir(self) -> Path:
        """One directory per sandbox node (see NodeLayout)."""
        return self.root / "nodes"

    def node(self, name: str) -> NodeLayout:
        return NodeLayout(self.nodes_dir / name)

    @property
    def host_mountpoints_file(self) -> Path:
        """The NODE_PRIVATE_PATHS that `up` had to create on the host (empty directories), so
        `down` removes exactly those."""
        return self.root / "host-mountpoints.json"

    @property
    def agent_state(self) -> Path:
        """The multinet node agent's --state-dir when localcluster.multinet runs it."""
        return self.root / "multinet"


@dataclass(frozen=True)
class NodeLayout:
    """The files of one sandbox node. `private(path)` is what the node sees at a host path of
    NODE_PRIVATE_PATHS; the rest is read through state-dir paths, from the host and the node."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    def private(self, host_path: str) -> Path:
        return self.root / "private" / host_path.strip("/").replace("/", "_")

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        """Under the state dir, not /run/containerd: the shims name it on their command line,
        which is how cleanup tells our shims from anyone else's."""
        return self.root / "containerd" / "run" / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.root / "containerd" / "run" / "runc"

    @property
    def nri_socket(self) -> Path:
        """The host-side path of the node's /run/nri/nri.sock."""
        return self.private("/run/nri") / "nri.sock"

    @property
    def kubelet_root(self) -> Path:
        """The host-side path of the node's /var/lib/kubelet."""
        return self.private("/var/lib/kubelet")

    @property
    def agent_state(self) -> Path:
        """The host-side path of the node's /var/lib/multinet (the agent's hostPath)."""
        return self.private("/var/lib/multinet")

    @property
    def static_pods(self) -> Path:
        return self.root / "manifests"

    @property
    def volume_plugins(self) -> Path:
        return self.root / "volume-plugins"

    @property
    def ready_marker(self) -> Path:
        """Written by the node's namespace holder once its mounts are in place."""
        return self.root / "sandbox.ready"

    def dirs(self) -> list[Path]:
        return [
            *(self.private(p) for p in NODE_PRIVATE_PATHS),
            self.config,
            self.containerd_root,
            self.containerd_state,
            self.root / "containerd" / "tmp",
            self.root / "containerd" / "opt",
            self.containerd_socket.parent,
            self.runc_root,
            self.private("/etc/cni") / "net.d",
            self.private("/run/nri"),
            self.root / "nri" / "plugins",
            self.root / "nri" / "conf.d",
            self.static_pods,
            self.volume_plugins,
        ]
