"""localcluster: a real Kubernetes cluster started from binaries on this machine: one node (the
machine itself) or N sandbox nodes (own netns, mounts, hostname; see docs/local-cluster.md).

A tool of this repository (not part of the `multinet` package) for the test suite and the demo.
Run it as ``python -m localcluster up|down|status|logs`` with ``PYTHONPATH=hack`` (the Makefile
and the pytest configuration set that).

State lives in ONE fixed directory, ``$MULTINET_CLUSTER_DIR`` (default
``/var/lib/multinet-localcluster``), so the debris of a killed run is always found::

    pki/                CA, leaf certificates, service-account key (kept across down/up)
    config/             kubeconfigs, kubelet.yaml, containerd.toml, scheduler.yaml
    etcd/               etcd data (wiped by down)
    kubelet/            the kubelet's --root-dir (plugins_registry/, plugins/, pods/)
    containerd/         containerd root (image store, kept) and state
    run/                containerd.sock, nri/nri.sock, runc state
    cni/                net.d/ (our bridge conflist), networks/ (host-local leases)
    logs/<name>.log     every component's and every extra process's log
    pids/<name>.pid     PID + start time of every managed process
    accounts/           kubeconfigs of service accounts handed out
    sysctls.json        sysctl values from before the kubelet ran (restored by down)

The admin kubeconfig is copied to ``<repo>/.cluster/kubeconfig`` (git-ignored).

API for other code (tests, the demo, deployment code)::

    from localcluster import Cluster, up, down

    cluster = up(say=print)             # start, or find running and healthy (then a no-op);
                                        # keep=True: test sessions never stop it (CLI, make);
                                        # nodes=N: N sandbox nodes (a cluster of another size
                                        # or Kubernetes version is replaced)
    cluster = Cluster.load()            # a handle on the cluster in the state dir (up or not)
    cluster.kubeconfig: Path            # admin kubeconfig (<repo>/.cluster/kubeconfig)
    cluster.node_name: str              # the host's name (the node's, with one node)
    cluster.node_ip: str                # the host's address (the default route's): the API's
    cluster.nodes: tuple[NodeSpec, ...] # sandbox nodes (name, ip, pod_cidr); () with one node
    cluster.node_names: list[str]       # every node's name, whichever the topology
    cluster.kubernetes_version: str     # "v1.36.3" (K8S_VERSION chooses at `up`)
    cluster.apiserver_url: str          # https://<node_ip>:6443, reachable from host and pods
    cluster.kubelet_root: Path          # the (host) node's kubelet --root-dir
    cluster.nri_socket: Path            # the (host) node's containerd NRI socket
    cluster.containerd_address: Path    # the (host) node's containerd gRPC socket
    cluster.layout.node(name)           # a sandbox node's paths (NodeLayout)
    cluster.state_dir: Path; cluster.log_dir: Path
    cluster.kubectl(*args, input=None, check=True) -> subprocess.CompletedProcess[str]
    cluster.is_up() -> bool             # every component alive and every node Ready
    cluster.start_process(name, argv, env=None, log_name=None) -> int   # managed like a
    cluster.stop_process(name)                                          # component; down stops it
    cluster.service_account_kubeconfig(namespace, name) -> Path   # own RBAC identity, 24h token
    cluster.restart_containerd()        # (one node) stop + start containerd, wait for its sockets
    cluster.total_rss_kib() -> int      # memory of the whole cluster: processes, shims, pods
    down()                              # stop all, clean the host, restore sysctls; idempotent

Errors: ``ClusterError`` (and its subclass ``ComponentFailed``, carrying the component's name, log
path and the last lines of its log); ``sandbox.SandboxError`` for a node sandbox that cannot be
set up (it names the command that failed).

Modules: layout (paths, versions), nodes (sandbox node specs), sandbox (netns, mounts, cgroups,
NICs of sandbox nodes), configs, components, pki, images (pause/busybox), image (multinet's image
with buildah), cluster (up/down), debris (cleanup), multinet (deploying multinet), demo, matrix.
"""

from .cluster import COMPONENTS, Cluster, ClusterError, ComponentFailed, down, up
from .layout import PAUSE_IMAGE, TEST_IMAGE

__all__ = [
    "COMPONENTS",
    "PAUSE_IMAGE",
    "TEST_IMAGE",
    "Cluster",
    "ClusterError",
    "ComponentFailed",
    "down",
    "up",
]
