"""Deploy multinet into the local cluster: the same manifests users get.

Many nodes (`--nodes N`, N >= 2): deploy/base runs as users run it, the controller Deployment and
the agent DaemonSet as pods, from the image `make image` builds (imported into every node's
containerd; the overlay in ./overlay changes only the image reference and its pull policy).

One node (the inner loop, fast): deploy/base's objects are applied except its workloads, and the
controller and the node agent run as host processes (managed like the cluster's components: pid
file, log in the log dir, stopped by `down`), each with a token of ITS OWN service account from
those manifests, never admin. The agent's token is bound to the Node, as a DaemonSet pod's token
would be, so the policy that lets an agent write only its own node's ResourceSlices applies.

    python -m localcluster.multinet deploy [--nodes N]   # idempotent; restarts what died
    python -m localcluster.multinet undeploy             # stops the processes (objects stay)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from . import image
from .cluster import Cluster, ClusterError, up
from .components import binary
from .layout import MULTINET_IMAGE, bin_dir
from .processes import wait_gone

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "base"
#: deploy/base with the local image reference and pull policy: what runs on sandbox nodes.
OVERLAY = Path(__file__).resolve().parent / "overlay"
NAMESPACE = "multinet-system"
CONTROLLER = "multinet-controller"
AGENT = "multinet-node-agent"
WORKLOAD_KINDS = {"Deployment", "DaemonSet"}
AGENT_METRICS_PORT = 9178
CONTROLLER_HEALTH_PORT = 9177


def render() -> list[dict[str, Any]]:
    """Every object of deploy/base, as users would apply it."""
    out = subprocess.run(
        [str(_kubectl()), "kustomize", str(BASE)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _kubectl() -> Path:
    return bin_dir() / "kubectl"


def agent_state_dir(cluster: Cluster) -> Path:
    return cluster.layout.agent_state


def apply_manifests(cluster: Cluster) -> None:
    objects = [o for o in render() if o["kind"] not in WORKLOAD_KINDS]
    doc = yaml.safe_dump_all(objects)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=doc)
    crds = [o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"]
    for name in crds:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


def _python() -> list[str]:
    """The interpreter as the image runs it: -OO is the image's PYTHONOPTIMIZE=2 (Dockerfile)."""
    return [sys.executable, "-OO"]


def start_controller(cluster: Cluster, *extra_args: str) -> Path:
    """Start `multinet controller` under its own service account; returns its kubeconfig."""
    kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, CONTROLLER)
    cluster.start_process(
        CONTROLLER,
        [
            *_python(),
            "-m",
            "multinet",
            "controller",
            "--kubeconfig",
            str(kubeconfig),
            "--health-port",
            str(CONTROLLER_HEALTH_PORT),
            *extra_args,
        ],
    )
    return kubeconfig


def start_agent(cluster: Cluster, env: dict[str, str] | None = None) -> None:
    """Start the node agent as a host process; `env` adds variables (e.g. a crash point of
    multinet.faults for the fault-injection suite)."""
    kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, AGENT, bound_node=cluster.node_name)
    cluster.start_process(
        AGENT,
        [
            *_python(),
            "-m",
            "multinet",
            "node-agent",
            "--kubeconfig",
            str(kubeconfig),
            "--node-name",
            cluster.node_name,
            "--kubelet-root",
            str(cluster.kubelet_root),
            "--state-dir",
            str(agent_state_dir(cluster)),
            "--nri-socket",
            str(cluster.nri_socket),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(AGENT_METRICS_PORT),
        ],
        env=env,
    )


def agent_ready() -> tuple[bool, str]:
    """The agent's /readyz verdict and body."""
    url = f"http://127.0.0.1:{AGENT_METRICS_PORT}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode()
    except OSError as exc:
        return False, str(exc)


def wait_agent_ready(cluster: Cluster, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        if not cluster.processes.alive(AGENT):
            raise ClusterError(_failure(cluster, AGENT, "exited"))
        ready, body = agent_ready()
        if ready:
            return
        time.sleep(0.5)
    raise ClusterError(_failure(cluster, AGENT, f"not ready after {timeout:.0f}s: {body.strip()}"))


def _failure(cluster: Cluster, name: str, why: str) -> str:
    log = cluster.processes.log_path(name)
    return f"{name} {why}; log {log}:\n{cluster.processes.tail(name, 25)}"


def stop_agent(cluster: Cluster, *, kill: bool = False) -> None:
    """Stop the agent (SIGTERM), or SIGKILL it like a crash: sockets and state stay behind."""
    pid = cluster.processes.pid(AGENT)
    if kill and pid is not None:
        os.kill(pid, signal.SIGKILL)
        wait_gone([pid], timeout=10)
    else:
        cluster.stop_process(AGENT)


def restart_agent(cluster: Cluster, *, kill: bool = False) -> None:
    """Stop (or SIGKILL) the agent and start it again; returns once it is ready."""
    stop_agent(cluster, kill=kill)
    start_agent(cluster)
    wait_agent_ready(cluster)


def import_multinet_image(cluster: Cluster, say: Any = print) -> None:
    """Build the image (or find it cached) and import it into every node's containerd."""
    tarball = image.multinet_image_tarball(MULTINET_IMAGE, say=say)
    ctr = Path(binary("ctr"))
    for name in cluster.node_names:
        image.import_image(ctr, cluster.layout.node(name).containerd_socket, tarball)
    say(f"imported {tarball.name} into {len(cluster.node_names)} nodes")


def tag_image(cluster: Cluster, ref: str, new_ref: str) -> None:
    """Give the image `ref` a second name on every node (a new tag for a rolling update)."""
    for name in cluster.node_names:
        socket = cluster.layout.node(name).containerd_socket
        ctr = [binary("ctr"), "--address", str(socket), "-n", "k8s.io"]
        subprocess.run(
            [*ctr, "images", "tag", "--force", ref, new_ref],
            check=True,
            capture_output=True,
            text=True,
        )


def deploy_pods(cluster: Cluster, say: Any = print, timeout: float = 180.0) -> None:
    """deploy/base as users apply it (through the local overlay), workloads as pods; returns
    once every node's agent pod is Ready and the controller is available."""
    import_multinet_image(cluster, say)
    say("applying deploy/base through hack/localcluster/overlay (image reference, pull policy)")
    rendered = cluster.kubectl("kustomize", str(OVERLAY)).stdout
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=rendered)
    crds = [
        d["metadata"]["name"]
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "CustomResourceDefinition"
    ]
    for name in crds:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    wait_workloads(cluster, timeout)
    say(f"multinet runs as pods on {', '.join(cluster.node_names)}")


def wait_workloads(cluster: Cluster, timeout: float = 180.0) -> None:
    """Until the agent DaemonSet is rolled out on every node and the controller is available
    (the current generation of each, every pod updated and Ready)."""
    deadline = time.monotonic() + timeout
    pending = [("daemonset", AGENT), ("deployment", CONTROLLER)]
    while pending:
        kind, name = pending[0]
        if _rolled_out(cluster, kind, name):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            pods = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False)
            raise ClusterError(
                f"{kind} {name} not rolled out after {timeout:.0f}s:\n{pods.stdout}"
                f"(kubectl -n {NAMESPACE} describe pods / logs tell why)"
            )
        time.sleep(1)


def _rolled_out(cluster: Cluster, kind: str, name: str) -> bool:
    proc = cluster.kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", check=False)
    if proc.returncode != 0:
        return False
    obj = yaml.safe_load(proc.stdout)
    status = obj.get("status", {})
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return False
    if kind == "daemonset":
        want = status.get("desiredNumberScheduled", -1)
        return bool(
            want == len(cluster.node_names)
            and status.get("updatedNumberScheduled") == want
            and status.get("numberReady") == want
            and status.get("numberAvailable") == want
        )
    want = obj["spec"].get("replicas", 1)
    return bool(
        status.get("updatedReplicas") == want
        and status.get("availableReplicas") == want
        and status.get("replicas") == want
    )


def deploy(cluster: Cluster, say: Any = print) -> None:
    """multinet into `cluster`: as pods on sandbox nodes, as host processes on a single node."""
    if cluster.nodes:
        deploy_pods(cluster, say)
        return
    say("applying deploy/base (CRDs, RBAC, admission policy) without its workloads")
    apply_manifests(cluster)
    if not cluster.processes.alive(CONTROLLER):
        say(f"starting {CONTROLLER} as a host process under its own service account")
        start_controller(cluster)
    if not cluster.processes.alive(AGENT):
        say(f"starting {AGENT} as a host process under its own node-bound service account")
        start_agent(cluster)
    wait_agent_ready(cluster)
    say(f"multinet is running; logs in {cluster.log_dir}")


def undeploy(cluster: Cluster) -> None:
    for name in (AGENT, CONTROLLER):
        cluster.stop_process(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.multinet")
    parser.add_argument("command", choices=["deploy", "undeploy"])
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="cluster size (default 1: multinet as host processes; 2 or more: as pods)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "deploy":
            # Like `localcluster up`: test sessions keep it.
            cluster = up(say=print, keep=True, nodes=args.nodes)
            deploy(cluster)
            print(f"kubeconfig: {cluster.kubeconfig}")
        else:
            undeploy(Cluster.load())
    except (ClusterError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"error: {exc}\n{detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
