"""The image recipe, the Makefile, kind's config and the manifests agree with each other and code.

None of docker, kind or a registry exists here, so `make image-docker` and `make kind-demo` never
run in this suite (`make image`, buildah's build of the same Dockerfile, does: tests/tool/
test_image.py; the DaemonSet and Deployment run as pods in tests/multinode); these fast checks
keep them from drifting:
- the image the manifests name is the Makefile's IMAGE, tagged with the package version;
- the Dockerfile installs this project and runs its `multinet` entry point;
- the workloads' commands are real subcommands and every env var they set is one the CLI reads;
- the DaemonSet mounts every host path the agent uses, at the same path, and its probes hit the
  agent's health endpoints (served for real here); the controller's probe likewise;
- kind's containerd has NRI on at the socket the agent dials by default;
- the samples are valid for our parameter and claim config models.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import re
import socket
import subprocess
import tomllib
import urllib.request
from pathlib import PurePosixPath

import manifests
import pytest
import yaml
from manifests import REPO, Obj
from packaging.specifiers import SpecifierSet

import multinet
from multinet.api import claimconfig, parameters
from multinet.cli import build_parser
from multinet.probes import HealthServer

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
MAKEFILE = (REPO / "Makefile").read_text()


def makefile_image() -> str:
    match = re.search(r"^IMAGE \?= (\S+)$", MAKEFILE, re.M)
    assert match, "the Makefile sets no `IMAGE ?= ...`"
    return match.group(1)


def agent() -> Obj:
    return manifests.container(manifests.one(manifests.render_base(), "DaemonSet"))


def controller() -> Obj:
    return manifests.container(manifests.one(manifests.render_base(), "Deployment"))


def parse_as_in_pod(ctr: Obj, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The arguments the process in this container runs with: its command, args and env."""
    for name in [*CLI_ENV_NAMES, "KUBECONFIG", "NODE_NAME"]:
        monkeypatch.delenv(name, raising=False)
    for var in ctr.get("env", []):
        monkeypatch.setenv(var["name"], var.get("value", f"<{var['name']} from the downward API>"))
    command = [*ctr["command"], *ctr.get("args", [])]
    assert command[0] == "multinet", f"container {ctr['name']} runs {command[0]!r}"
    return build_parser().parse_args(command[1:])


def env_vars_read(subcommand: str, capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The `[env X]` names in `multinet <subcommand> --help`."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([subcommand, "--help"])
    return set(re.findall(r"\[env\s+([A-Z0-9_]+)", capsys.readouterr().out))


CLI_ENV_NAMES = [
    "MULTINET_KUBELET_ROOT",
    "MULTINET_STATE_DIR",
    "MULTINET_NRI_SOCKET",
    "MULTINET_METRICS_PORT",
    "MULTINET_METRICS_ADDRESS",
    "MULTINET_HEALTH_PORT",
    "MULTINET_NAMESPACE",
    "MULTINET_LOG_FORMAT",
    "MULTINET_LOG_LEVEL",
]


# --- image ------------------------------------------------------------------------------------
def test_every_rendered_image_is_the_makefiles_image_tagged_with_the_package_version() -> None:
    image = makefile_image()
    rendered = {c["image"] for c in manifests.containers(manifests.render_base())}
    assert rendered == {image}
    assert image.rsplit(":", 1)[1] == multinet.__version__
    (entry,) = manifests.kustomization(manifests.BASE)["images"]
    assert f"{entry['newName']}:{entry['newTag']}" == image


def test_dockerfile_installs_this_project_and_runs_its_multinet_entry_point() -> None:
    assert PYPROJECT["project"]["scripts"] == {"multinet": "multinet.cli:main"}
    module, func = PYPROJECT["project"]["scripts"]["multinet"].split(":")
    assert callable(getattr(importlib.import_module(module), func))
    assert re.search(r'^ENTRYPOINT \["multinet"\]$', DOCKERFILE, re.M)
    assert re.search(r"^RUN \S+python3 -m pip wheel .* -c requirements.lock \.$", DOCKERFILE, re.M)
    assert "COPY src ./src" in DOCKERFILE and "COPY pyproject.toml" in DOCKERFILE
    # Installed into a virtualenv whose bin/ (where `multinet` lands) is on PATH.
    assert "python3 -m venv /opt/multinet" in DOCKERFILE
    assert re.search(r"^ENV PATH=/opt/multinet/bin:\$PATH$", DOCKERFILE, re.M)
    # Every stage is FROM the BASE_IMAGE argument (`make image` passes a Debian base), whose
    # default, for `docker build .`, is a slim Python satisfying requires-python.
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert len(stages) >= 2 and set(stages) == {"${BASE_IMAGE}"}, f"stages: {stages}"
    default = re.search(r"^ARG BASE_IMAGE=python:(\d+\.\d+)-slim$", DOCKERFILE, re.M)
    assert default, "no `ARG BASE_IMAGE=python:<version>-slim`"
    assert default.group(1) in SpecifierSet(PYPROJECT["project"]["requires-python"])
    # The workloads rely on the entry point, not on the image's ENTRYPOINT.
    assert agent()["command"][0] == controller()["command"][0] == "multinet"


# --- commands and env -------------------------------------------------------------------------
def test_workload_commands_are_real_subcommands(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_as_in_pod(agent(), monkeypatch).command == "node-agent"
    assert parse_as_in_pod(controller(), monkeypatch).command == "controller"


@pytest.mark.parametrize(
    ("which", "subcommand"), [("agent", "node-agent"), ("controller", "controller")]
)
def test_every_env_var_a_workload_sets_is_one_its_command_reads(
    which: str, subcommand: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctr = agent() if which == "agent" else controller()
    assert ctr["command"][1] == subcommand
    set_by_manifest = {v["name"] for v in ctr.get("env", [])}
    read = env_vars_read(subcommand, capsys)
    assert set_by_manifest, "the manifest sets no env at all"
    assert set_by_manifest <= read, f"set but never read: {sorted(set_by_manifest - read)}"


def test_the_help_lists_the_env_vars_this_test_clears(capsys: pytest.CaptureFixture[str]) -> None:
    # parse_as_in_pod clears these so the runner's environment cannot leak into the checks.
    read = env_vars_read("node-agent", capsys) | env_vars_read("controller", capsys)
    assert set(CLI_ENV_NAMES) <= read


# --- the agent's host paths -------------------------------------------------------------------
def _mounts(ds: Obj) -> dict[str, tuple[str, Obj]]:
    """mountPath -> (hostPath path, mount), for hostPath volumes."""
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    out = {}
    for mount in manifests.container(ds)["volumeMounts"]:
        host = volumes[mount["name"]].get("hostPath")
        assert host, f"volume {mount['name']} is not a hostPath"
        out[mount["mountPath"]] = (host["path"], mount)
    return out


def _covering(path: PurePosixPath, mounts: dict[str, tuple[str, Obj]]) -> tuple[str, Obj] | None:
    best = [m for m in mounts if path == PurePosixPath(m) or PurePosixPath(m) in path.parents]
    return mounts[max(best, key=len)] if best else None


def test_daemonset_mounts_every_host_path_the_agent_uses_at_the_same_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds = manifests.one(manifests.render_base(), "DaemonSet")
    args = parse_as_in_pod(manifests.container(ds), monkeypatch)
    root = PurePosixPath(args.kubelet_root)
    needed = {
        # The kubelet connects to the sockets at the paths the agent registers: host path must
        # equal container path.
        "kubelet plugin registry": root / "plugins_registry",
        "kubelet DRA plugin sockets": root / "plugins",
        "NRI socket directory": PurePosixPath(args.nri_socket).parent,
        "checkpoint state dir": PurePosixPath(args.state_dir),
        "pod network namespaces": PurePosixPath("/var/run/netns"),
    }
    mounts = _mounts(ds)
    for what, path in needed.items():
        found = _covering(path, mounts)
        assert found, f"{what} {path} is not under any volumeMount of the DaemonSet"
        host, mount = found
        assert host == mount["mountPath"], f"{what}: host {host} mounted at {mount['mountPath']}"
        assert not mount.get("readOnly"), f"{what} is mounted read-only"
    netns = _covering(needed["pod network namespaces"], mounts)
    assert netns and netns[1].get("mountPropagation") == "HostToContainer", (
        "/var/run/netns needs HostToContainer propagation to see namespaces made after start"
    )
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    env = {v["name"]: v for v in manifests.container(ds)["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_the_agents_defaults_are_what_the_daemonset_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLI_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    defaults = build_parser().parse_args(["node-agent"])
    in_pod = parse_as_in_pod(agent(), monkeypatch)
    for key in ("kubelet_root", "state_dir", "nri_socket", "metrics_port"):
        assert getattr(in_pod, key) == getattr(defaults, key), key


def _port(ctr: Obj, probe: Obj) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    (named,) = [p["containerPort"] for p in ctr["ports"] if p["name"] == port]
    return int(named)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _get(port: int, path: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()

    return await asyncio.to_thread(fetch)


async def test_agent_probes_hit_its_health_endpoints_on_its_metrics_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctr = agent()
    args = parse_as_in_pod(ctr, monkeypatch)
    live, ready = ctr["livenessProbe"], ctr["readinessProbe"]
    assert (live["httpGet"]["path"], ready["httpGet"]["path"]) == ("/healthz", "/readyz")
    assert _port(ctr, live) == _port(ctr, ready) == args.metrics_port
    assert args.metrics_address == "0.0.0.0", "the kubelet probes the node's address"
    # The agent's server answers both paths (on a free port here: 9178 may be in use).
    server = HealthServer("127.0.0.1", _free_port())
    await server.start()
    try:
        port = server._port
        assert await _get(port, "/healthz") == (200, "ok\n")
        assert await _get(port, "/readyz") == (200, "ok\n")
    finally:
        await server.stop()


async def test_controller_probe_hits_its_health_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    ctr = controller()
    args = parse_as_in_pod(ctr, monkeypatch)
    probe = ctr["livenessProbe"]
    assert probe["httpGet"]["path"] == "/healthz"
    assert _port(ctr, probe) == args.health_port
    port = _free_port()
    server = HealthServer("127.0.0.1", port)  # what `multinet controller` starts
    await server.start()
    try:
        assert await _get(port, "/healthz") == (200, "ok\n")
    finally:
        await server.stop()


# --- kind -------------------------------------------------------------------------------------
def test_kind_config_enables_nri_at_the_agents_default_socket() -> None:
    config = yaml.safe_load((REPO / "hack" / "kind-config.yaml").read_text())
    patches = [tomllib.loads(p) for p in config["containerdConfigPatches"]]
    nri = [p["plugins"]["io.containerd.nri.v1.nri"] for p in patches if "plugins" in p]
    assert len(nri) == 1, "one containerd patch configures NRI"
    default = build_parser().parse_args(["node-agent"]).nri_socket
    assert nri[0]["disable"] is False
    assert nri[0]["socket_path"] == default == "/var/run/nri/nri.sock"
    # A worker node: the DaemonSet's pods land somewhere besides the control plane.
    assert {n["role"] for n in config["nodes"]} == {"control-plane", "worker"}


# --- Makefile ---------------------------------------------------------------------------------
def _make(*args: str) -> str:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_make_help_lists_the_packaging_targets_with_a_description() -> None:
    listed = {}
    for line in _make("help").splitlines():
        name, _, text = line.strip().partition(" ")
        listed[name] = text.strip()
    targets = ("build", "image", "image-docker", "kind-up", "kind-load", "deploy", "kind-demo")
    for target in (*targets, "clean"):
        assert listed.get(target), f"`make help` does not describe {target}"


def test_docker_and_kind_targets_use_the_image_and_the_kind_config() -> None:
    image = makefile_image()
    assert f"-m localcluster.image build --ref {image}" in _make("-n", "image")
    assert f"docker build -t {image} ." in _make("-n", "image-docker")
    assert "--config hack/kind-config.yaml --name multinet" in _make("-n", "kind-up")
    assert f"kind load docker-image {image} --name multinet" in _make("-n", "kind-load")
    assert "apply -k deploy/base" in _make("-n", "deploy")
    demo = _make("-n", "kind-demo")
    for step in ("kind create cluster", "docker build", "kind load", "apply -k deploy/base"):
        assert step in demo, step
    assert demo.index("apply -k deploy/base") < demo.index("apply -k deploy/samples")
    clean = _make("-n", "clean")
    assert "-m localcluster down" in clean and ".cluster" in clean and "dist" in clean


# --- samples ----------------------------------------------------------------------------------
def _samples() -> list[Obj]:
    return manifests.render(manifests.SAMPLES)


def test_sample_podnetworks_are_valid_parameters() -> None:
    networks = [o for o in _samples() if o["kind"] == "PodNetwork"]
    modes = set()
    for pnw in networks:
        assert pnw["spec"]["provider"] == "multinet.dev"
        params = parameters.parse(pnw["spec"]["parameters"])
        modes.add((params.mode, params.ipam.type))
    assert ("host-device", "none") in modes and ("macvlan", "pool") in modes


def _requests(claim_spec: Obj) -> list[Obj]:
    reqs: list[Obj] = claim_spec["devices"]["requests"]
    return reqs


def test_sample_claims_name_sample_networks_and_their_config_is_valid() -> None:
    samples = _samples()
    networks = {
        o["metadata"]["name"]: parameters.parse(o["spec"]["parameters"])
        for o in samples
        if o["kind"] == "PodNetwork"
    }
    claim = manifests.one(samples, "ResourceClaim")
    template = manifests.one(samples, "ResourceClaimTemplate")
    for spec in (claim["spec"], template["spec"]["spec"]):
        for req in _requests(spec):
            assert req["exactly"]["deviceClassName"] in networks
    configs = [
        claimconfig.OpaqueConfig(c["opaque"]["parameters"], i, tuple(c.get("requests", ())))
        for i, c in enumerate(claim["spec"]["devices"]["config"])
        if c["opaque"]["driver"] == "multinet.dev"
    ]
    assert configs, "the claim sample shows an opaque config"
    (req,) = _requests(claim["spec"])
    eff = claimconfig.effective_config(
        networks[req["exactly"]["deviceClassName"]],
        [],
        configs,
        claim=f"default/{claim['metadata']['name']}",
        request=req["name"],
    )
    assert eff.interface_name and eff.addresses


def test_sample_pod_uses_the_sample_template() -> None:
    samples = _samples()
    pod = manifests.one(samples, "Pod")
    template = manifests.one(samples, "ResourceClaimTemplate")
    refs = {c["name"]: c for c in pod["spec"]["resourceClaims"]}
    assert [c["resourceClaimTemplateName"] for c in refs.values()] == [template["metadata"]["name"]]
    used = {c["name"] for ctr in pod["spec"]["containers"] for c in ctr["resources"]["claims"]}
    assert used == set(refs)


def test_samples_are_not_part_of_the_base() -> None:
    base = {(o["kind"], o["metadata"]["name"]) for o in manifests.render_base()}
    samples = {(o["kind"], o["metadata"]["name"]) for o in _samples()}
    assert not base & samples
    assert all(not r.startswith("..") for r in manifests.kustomization(manifests.BASE)["resources"])
    # The raw JSON a user sees for the claim config is camelCase, as the model expects.
    claim = manifests.one(_samples(), "ResourceClaim")
    assert "interfaceName" in json.dumps(claim)
