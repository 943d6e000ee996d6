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
from . import configs, debris, images, pki
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
    )
    local = f"https://127.0.0.1:{L.APISERVER_PORT}"
    for stem, server in (
        ("admin", local),
        ("controller-manager", local),
        ("scheduler", local),
        ("kubelet", cluster.apiserver_url),
    ):
        cert = "kubelet-client" if stem == "kubelet" else stem
        _write(
            lay.config / f"{stem}.kubeconfig",
            configs.kubeconfig(
                server=server,
                ca=lay.pki / "ca.crt",
                cert=lay.pki / f"{cert}.crt",
                key=lay.pki / f"{cert}.key",
                user=stem,
            ),
            0o600,
        )
    _write(
        lay.config / "scheduler.yaml", configs.scheduler_config(lay.config / "scheduler.kubeconfig")
    )
    _write(lay.config / "kubelet.yaml", configs.kubelet_config(lay))
    _write(
        lay.config / "containerd.toml",
        configs.containerd_config(lay, runc=C.system_binary("runc"), cni_bin_dir="/usr/lib/cni"),
    )
    _write(lay.cni_conf_dir / "10-mnlc-pods.conflist", configs.cni_conflist(lay))
    for d in (
        lay.etcd_data,
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
        lay.logs,
        lay.pids,
    ):
        d.mkdir(parents=True, exist_ok=True)
    lay.etcd_data.chmod(0o700)
    lay.info_file.write_text(
        json.dumps(
            {
                "node_name": cluster.node_name,
                "node_ip": cluster.node_ip,
                "apiserver": cluster.apiserver_url,
            },
            indent=2,
        )
        + "\n"
    )


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
        for name in COMPONENTS:
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
    extras = [r.name for r in procs.records() if r.name not in COMPONENTS]
    for name in extras:
        procs.stop(name)
    # The kubelet first, so it does not restart what we stop; then the pods; then the rest.
    procs.stop("kubelet")
    managed = frozenset(p for n in COMPONENTS if (p := procs.pid(n)) is not None)
    killed = debris.kill_orphans(cluster.layout, keep=managed)
    if killed:
        say(f"  killed {len(killed)} pod/shim processes")
    for name in reversed(COMPONENTS):
        procs.stop(name)


def _running_and_ready(cluster: Cluster, grace: float = 60.0) -> bool:
    """True if the cluster is up. When every process runs but the node is not Ready (a test may
    have just restarted containerd), give it `grace` seconds rather than tearing it down under
    other users' feet."""
    if not all(cluster.processes.alive(n) for n in COMPONENTS):
        return False
    deadline = time.monotonic() + grace
    while not cluster.node_is_ready():
        if time.monotonic() > deadline or not all(cluster.processes.alive(n) for n in COMPONENTS):
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


def up(state_dir: Path | str | None = None, *, say: Say = _quiet, keep: bool = False) -> Cluster:
    """Bring the cluster up (or find it up: then a no-op). Returns the handle; raises
    ComponentFailed / ClusterError with the failing component's log tail.

    keep=True (a human asked: the CLI, `make cluster-up`) marks the cluster so that the test
    session that started it does not stop it at its end; only `down` clears the mark."""
    cluster = Cluster.load(state_dir)
    lay = cluster.layout
    with _locked(lay):
        if keep:
            lay.keep_file.touch()
        cluster = Cluster.load(state_dir)
        if _running_and_ready(cluster):
            say(f"cluster already up; kubeconfig: {cluster.kubeconfig}")
            return cluster
        started = time.monotonic()
        _refuse_second_cluster(lay)
        say(f"cleaning previous state in {lay.root}")
        _stop_components(cluster, say)
        problems = debris.clean(lay)
        if problems:
            raise ClusterError("cannot clean the previous cluster: " + "; ".join(problems))
        cluster = Cluster(lay, node_name_default(), node_ip_default())
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
    say(f"node {cluster.node_name} ({cluster.node_ip}); state in {lay.root}")
    _prepare(cluster)
    debris.record_sysctls(lay)
    start_and_wait(cluster, [C.etcd(lay), C.containerd(lay)], say)
    # The apiserver takes seconds to start: import the images meanwhile.
    start_components(cluster, [C.kube_apiserver(lay, cluster.node_ip)])
    refs = images.import_images(Path(C.binary("ctr")), lay.containerd_socket)
    say(f"  imported {', '.join(refs)}")
    start_and_wait(cluster, [C.kube_apiserver(lay, cluster.node_ip)], say)
    cluster.kubectl("apply", "-f", "-", input=_APISERVER_KUBELET_RBAC)
    start_and_wait(
        cluster,
        [
            C.kube_controller_manager(lay),
            C.kube_scheduler(lay),
            C.kubelet(lay, cluster.node_name, cluster.node_ip),
        ],
        say,
    )
    _wait(f"node {cluster.node_name} Ready", cluster.node_is_ready, 120, cluster)
    _wait(
        "the default service account",
        lambda: cluster.api_get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
        60,
        cluster,
    )


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
