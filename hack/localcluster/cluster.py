"""`up` and `down`: bring the cluster up from a clean slate (over any debris), and take it down
leaving the machine as it was. Serialised across processes with a flock in the state dir."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import components as C
from . import configs, debris, images, pki, sandbox
from . import layout as L
from .handle import (
    COMPONENTS,
    Cluster,
    ClusterError,
    ComponentFailed,
    Say,
    node_ip_default,
    node_name_default,
    start_and_wait,
    start_components,
)
from .nodes import NodeSpec, node_specs

__all__ = ["COMPONENTS", "Cluster", "ClusterError", "ComponentFailed", "down", "up"]


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def _locked(lay: L.Layout) -> Iterator[None]:
    """Serialise `up`/`down` across processes (several test sessions may call `up` at once)."""
    lay.root.mkdir(parents=True, exist_ok=True)
    with lay.lock_file.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write with `mode` from the first byte (kubeconfigs hold private keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(mode)


def _prepare(cluster: Cluster) -> None:
    """PKI, kubeconfigs, config files and directories for a fresh start."""
    lay = cluster.layout
    pki.ensure_pki(
        lay.pki,
        node_name=cluster.node_name,
        node_ip=cluster.node_ip,
        service_ip=L.KUBERNETES_SERVICE_IP,
        sandbox_nodes=tuple((n.name, n.ip) for n in cluster.nodes),
    )
    local = f"https://127.0.0.1:{L.APISERVER_PORT}"
    for stem, server in (
        ("admin", local),
        ("controller-manager", local),
        ("scheduler", local),
        ("kubelet", cluster.apiserver_url),
    ):
        cert = "kubelet-client" if stem == "kubelet" else stem
        _write_kubeconfig(lay, lay.config / f"{stem}.kubeconfig", server, cert, stem)
    _write(
        lay.config / "scheduler.yaml", configs.scheduler_config(lay.config / "scheduler.kubeconfig")
    )
    if cluster.nodes:
        for node in cluster.nodes:
            _prepare_node(cluster, node)
    else:
        _prepare_host_node(lay)
    for d in (lay.etcd_data, lay.logs, lay.pids):
        d.mkdir(parents=True, exist_ok=True)
    lay.etcd_data.chmod(0o700)
    info = {
        "node_name": cluster.node_name,
        "node_ip": cluster.node_ip,
        "apiserver": cluster.apiserver_url,
        "nodes": cluster.node_count,
        "kubernetes": L.kubernetes_version(),
    }
    lay.info_file.write_text(json.dumps(info, indent=2) + "\n")


def _write_kubeconfig(lay: L.Layout, path: Path, server: str, cert: str, user: str) -> None:
    text = configs.kubeconfig(
        server=server,
        ca=lay.pki / "ca.crt",
        cert=lay.pki / f"{cert}.crt",
        key=lay.pki / f"{cert}.key",
        user=user,
    )
    _write(path, text, 0o600)


def _write_containerd_config(config_dir: Path, paths: configs.ContainerdPaths) -> None:
    """containerd.toml for one node: Debian's runc and CNI plugins, the node's own paths."""
    text = configs.containerd_config(
        paths, runc=C.system_binary("runc"), cni_bin_dir="/usr/lib/cni"
    )
    _write(config_dir / "containerd.toml", text)


def _prepare_host_node(lay: L.Layout) -> None:
    """The single node that is this machine: its configs and directories in the state dir."""
    _write(lay.config / "kubelet.yaml", configs.kubelet_config(lay))
    _write_containerd_config(lay.config, configs.ContainerdPaths.of_host(lay))
    _write(
        lay.cni_conf_dir / "10-mnlc-pods.conflist",
        configs.cni_conflist(data_dir=lay.cni_ipam_dir),
    )
    for d in (
        lay.kubelet_root,
        lay.pod_logs,
        lay.static_pods,
        lay.volume_plugins,
        lay.containerd_root,
        lay.containerd_state,
        lay.root / "containerd" / "tmp",
        lay.containerd_opt,
        lay.containerd_socket.parent,
        lay.runc_root,
        lay.nri_socket.parent,
        lay.nri_plugins,
        lay.nri_plugin_config,
        lay.cni_ipam_dir,
    ):
        d.mkdir(parents=True, exist_ok=True)


def _prepare_node(cluster: Cluster, node: NodeSpec) -> None:
    """A sandbox node: its kubelet identity, configs and the directories it mounts."""
    lay = cluster.layout
    nl = lay.node(node.name)
    for d in nl.dirs():
        d.mkdir(parents=True, exist_ok=True)
    cert = f"kubelet-client-{node.name}"
    _write_kubeconfig(
        lay, nl.config / "kubelet.kubeconfig", cluster.apiserver_url, cert, f"kubelet-{node.name}"
    )
    _write(nl.config / "kubelet.yaml", configs.node_kubelet_config(lay, node))
    _write_containerd_config(nl.config, configs.ContainerdPaths.of_node(nl))
    conflist = configs.cni_conflist(subnet=node.pod_cidr, data_dir=Path("/var/lib/cni/networks"))
    _write(nl.private("/etc/cni") / "net.d" / "10-mnlc-pods.conflist", conflist)


_APISERVER_KUBELET_RBAC = json.dumps(
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "multinet-local:kube-apiserver-kubelet-api-admin"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kubelet-api-admin",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kube-apiserver"}
        ],
    }
)


def _wait(what: str, predicate: Callable[[], bool], timeout: float, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for name in cluster.component_names():
            if not cluster.processes.alive(name):
                why = f"exited while waiting for {what}"
                raise ComponentFailed.from_log(cluster.processes, name, why)
        if time.monotonic() > deadline:
            raise ClusterError(
                f"timed out after {timeout:.0f} s waiting for {what}; logs in {cluster.log_dir}"
            )
        time.sleep(0.5)


def _stop_components(cluster: Cluster, say: Say) -> None:
    procs = cluster.processes
    names = cluster.component_names()
    extras = [r.name for r in procs.records() if r.name not in names]
    for name in extras:
        procs.stop(name)
    # The kubelets first, so they do not restart what we stop; then the pods; then the rest.
    for name in names:
        if name.endswith("kubelet"):
            procs.stop(name)
    managed = frozenset(p for n in names if (p := procs.pid(n)) is not None)
    killed = debris.kill_orphans(cluster.layout, keep=managed)
    if killed:
        say(f"  killed {len(killed)} pod/shim processes")
    for name in reversed(names):
        procs.stop(name)


def _running_and_ready(cluster: Cluster, grace: float = 60.0) -> bool:
    """True if the cluster is up. When every process runs but the node is not Ready (a test may
    have just restarted containerd), give it `grace` seconds rather than tearing it down under
    other users' feet."""
    names = cluster.component_names()
    if not all(cluster.processes.alive(n) for n in names):
        return False
    deadline = time.monotonic() + grace
    while not cluster.node_is_ready():
        if time.monotonic() > deadline or not all(cluster.processes.alive(n) for n in names):
            return False
        time.sleep(0.5)
    return True


def _refuse_second_cluster(lay: L.Layout) -> None:
    others = debris.foreign_kubelets(lay)
    if others:
        pid, root = others[0]
        raise ClusterError(
            f"another local cluster runs on this host (kubelet pid {pid}, --root-dir={root}); "
            "only one fits (host-wide bridge, cgroups, ports): take that one down first"
        )


def up(
    state_dir: Path | str | None = None, *, say: Say = _quiet, keep: bool = False, nodes: int = 1
) -> Cluster:
    """Bring a cluster of `nodes` nodes up (or find it up: then a no-op; a running cluster of
    another size is taken down first). Returns the handle; raises ComponentFailed /
    ClusterError with the failing component's log tail.

    keep=True (a human asked: the CLI, `make cluster-up`) marks the cluster so that the test
    session that started it does not stop it at its end; only `down` clears the mark."""
    cluster = Cluster.load(state_dir)
    lay = cluster.layout
    with _locked(lay):
        if keep:
            lay.keep_file.touch()
        cluster = Cluster.load(state_dir)
        wanted = node_specs(nodes)
        same = cluster.nodes == wanted and cluster.kubernetes_version == L.kubernetes_version()
        if same and _running_and_ready(cluster):
            say(f"cluster already up; kubeconfig: {cluster.kubeconfig}")
            return cluster
        started = time.monotonic()
        _refuse_second_cluster(lay)
        say(f"cleaning previous state in {lay.root}")
        _stop_components(cluster, say)
        problems = debris.clean(lay)
        if problems:
            raise ClusterError("cannot clean the previous cluster: " + "; ".join(problems))
        cluster = Cluster(
            lay, node_name_default(), node_ip_default(), wanted, L.kubernetes_version()
        )
        try:
            _bring_up(cluster, say)
        except BaseException:
            say(f"up failed; stopping what was started (logs stay in {lay.logs})")
            _stop_components(cluster, say)
            debris.clean(lay)
            debris.restore_sysctls(lay)
            raise
        say(f"cluster up in {time.monotonic() - started:.1f} s; kubeconfig: {cluster.kubeconfig}")
        cluster.started_here = True
        return cluster


def _bring_up(cluster: Cluster, say: Say) -> None:
    lay = cluster.layout
    version = L.kubernetes_version()
    if cluster.nodes:
        say(f"Kubernetes {version}: {cluster.node_count} sandbox nodes, API on {cluster.node_ip}")
    else:
        say(f"Kubernetes {version}: node {cluster.node_name} ({cluster.node_ip}), state {lay.root}")
    _prepare(cluster)
    debris.record_sysctls(lay)
    start_and_wait(cluster, [C.etcd(lay), *_runtimes(cluster, say)], say)
    # The apiserver takes seconds to start: import the images meanwhile.
    start_components(cluster, [C.kube_apiserver(lay, cluster.node_ip)])
    for address in _containerd_sockets(cluster):
        refs = images.import_images(Path(C.binary("ctr")), address)
    say(f"  imported {', '.join(refs)}")
    start_and_wait(cluster, [C.kube_apiserver(lay, cluster.node_ip)], say)
    cluster.kubectl("apply", "-f", "-", input=_APISERVER_KUBELET_RBAC)
    start_and_wait(
        cluster, [C.kube_controller_manager(lay), C.kube_scheduler(lay), *_kubelets(cluster)], say
    )
    _wait(f"nodes {', '.join(cluster.node_names)} Ready", cluster.node_is_ready, 120, cluster)
    _wait(
        "the default service account",
        lambda: cluster.api_get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
        60,
        cluster,
    )


def _runtimes(cluster: Cluster, say: Say) -> list[C.Component]:
    """containerd of the host node; or the sandboxes (made and waited for here) and theirs."""
    lay = cluster.layout
    if not cluster.nodes:
        return [C.containerd(lay)]
    sandbox.make_network(cluster.nodes, cluster.node_ip, L.APISERVER_PORT)
    sandbox.ensure_host_mountpoints(lay)
    sandbox.make_cgroup_roots(cluster.nodes)
    start_and_wait(cluster, [C.node_holder(lay, n) for n in cluster.nodes], say)
    return [C.node_containerd(lay, n, _holder_pid(cluster, n)) for n in cluster.nodes]


def _holder_pid(cluster: Cluster, node: NodeSpec) -> int:
    pid = cluster.processes.pid(f"{node.name}.sandbox")
    if pid is None:
        raise ClusterError(f"the namespace holder of {node.name} is not running")
    return pid


def _kubelets(cluster: Cluster) -> list[C.Component]:
    lay = cluster.layout
    if not cluster.nodes:
        return [C.kubelet(lay, cluster.node_name, cluster.node_ip)]
    return [C.node_kubelet(lay, n, _holder_pid(cluster, n)) for n in cluster.nodes]


def _containerd_sockets(cluster: Cluster) -> list[Path]:
    if not cluster.nodes:
        return [cluster.layout.containerd_socket]
    return [cluster.layout.node(n.name).containerd_socket for n in cluster.nodes]


def down(state_dir: Path | str | None = None, *, say: Say = _quiet) -> None:
    """Stop everything, remove what the cluster left on the host, restore the sysctls.
    Idempotent; keeps the PKI, the image store and the logs."""
    cluster = Cluster.load(state_dir)
    lay = cluster.layout
    if not lay.root.exists():
        say("no cluster state; nothing to do")
        return
    with _locked(lay):
        _refuse_second_cluster(lay)
        _stop_components(cluster, say)
        problems = debris.clean(lay)
        restored = debris.restore_sysctls(lay)
        if restored:
            say(f"  restored sysctls {restored}")
        lay.info_file.unlink(missing_ok=True)
        lay.keep_file.unlink(missing_ok=True)
        lay.repo_kubeconfig.unlink(missing_ok=True)
        if problems:
            raise ClusterError("down left debris: " + "; ".join(problems))
        say("cluster down")
