"""The cluster tool's parts that need no running cluster: PKI, rendered configs, OCI packing,
managed processes and fail-fast start-up (all under tmp dirs, nothing host-wide)."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from helpers import wait_for
from localcluster import ComponentFailed, configs, pki
from localcluster import layout as L
from localcluster.components import Component
from localcluster.handle import Cluster, start_and_wait
from localcluster.images import FileEntry, _layer, pack_oci
from localcluster.nodes import node_specs
from localcluster.processes import ProcessTable, proc_start_time


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in ext}


def test_pki_has_the_names_rbac_and_the_node_authorizer_expect(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, node_name="node-a", node_ip="192.0.2.9", service_ip="10.96.0.1")
    api = _cert(tmp_path / "apiserver.crt")
    assert {"192.0.2.9", "10.96.0.1", "127.0.0.1", "kubernetes.default.svc"} <= _sans(api)
    kubelet = _cert(tmp_path / "kubelet-client.crt").subject
    assert kubelet.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:node-a"
    assert kubelet.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    admin = _cert(tmp_path / "admin.crt").subject
    assert admin.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert (tmp_path / "sa.key").stat().st_mode & 0o077 == 0


def test_pki_reissues_leaves_when_the_node_address_changes_and_keeps_the_ca(
    tmp_path: Path,
) -> None:
    pki.ensure_pki(tmp_path, node_name="node-a", node_ip="192.0.2.9", service_ip="10.96.0.1")
    ca, admin = (tmp_path / "ca.crt").read_bytes(), (tmp_path / "admin.crt").read_bytes()
    pki.ensure_pki(tmp_path, node_name="node-a", node_ip="192.0.2.77", service_ip="10.96.0.1")
    assert (tmp_path / "ca.crt").read_bytes() == ca
    assert (tmp_path / "admin.crt").read_bytes() == admin  # no address in it: kept
    serving = _sans(_cert(tmp_path / "kubelet-serving.crt"))
    assert "192.0.2.77" in serving and "192.0.2.9" not in serving
    ipaddress.ip_address("192.0.2.77")


def test_containerd_config_has_what_this_machine_requires(tmp_path: Path) -> None:
    lay = L.Layout(tmp_path)
    paths = configs.ContainerdPaths.of_host(lay)
    doc = tomllib.loads(configs.containerd_config(paths, runc="/usr/sbin/runc", cni_bin_dir="/cni"))
    assert doc["version"] == 3
    rt = doc["plugins"]["io.containerd.cri.v1.runtime"]
    assert rt["restrict_oom_score_adj"] is True and rt["enable_cdi"] is True
    runc = rt["containerd"]["runtimes"]["runc"]["options"]
    assert runc == {
        "BinaryName": "/usr/sbin/runc",
        "Root": str(lay.runc_root),
        "SystemdCgroup": False,
    }
    assert rt["cni"]["conf_dir"] == str(lay.cni_conf_dir) and rt["cni"]["bin_dirs"] == ["/cni"]
    nri = doc["plugins"]["io.containerd.nri.v1.nri"]
    assert nri["disable"] is False and nri["socket_path"] == str(lay.nri_socket)
    assert nri["plugin_request_timeout"] == "2s"
    pinned = doc["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]
    assert pinned["sandbox"] == L.PAUSE_IMAGE
    assert doc["grpc"]["address"] == str(lay.containerd_socket)


def test_kubelet_config_runs_on_cgroup_v1_without_cap_sys_resource(tmp_path: Path) -> None:
    doc = yaml.safe_load(configs.kubelet_config(L.Layout(tmp_path)))
    assert doc["failCgroupV1"] is False and doc["cgroupDriver"] == "cgroupfs"
    assert doc["oomScoreAdj"] == 0 and doc["failSwapOn"] is False
    assert doc["evictionHard"]["nodefs.available"] == "0%"
    assert doc["evictionHard"]["memory.available"] == "100Mi"
    assert doc["authentication"]["webhook"]["enabled"] is True
    assert doc["authorization"]["mode"] == "Webhook"
    assert doc["podLogsDir"].startswith(str(tmp_path))


def test_cni_conflist_is_a_bridge_without_masquerade(tmp_path: Path) -> None:
    doc = json.loads(configs.cni_conflist(data_dir=L.Layout(tmp_path).cni_ipam_dir))
    bridge = doc["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == L.BRIDGE_NAME
    assert bridge["ipMasq"] is False and bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


def test_sandbox_nodes_get_distinct_addresses_pod_ranges_and_standard_paths(
    tmp_path: Path,
) -> None:
    assert node_specs(1) == ()  # one node: the host itself, as before
    specs = node_specs(3)
    assert [n.name for n in specs] == ["mnlc-node-1", "mnlc-node-2", "mnlc-node-3"]
    assert len({n.ip for n in specs}) == len({n.pod_cidr for n in specs}) == 3
    with pytest.raises(ValueError, match="between 1 and"):
        node_specs(0)
    lay = L.Layout(tmp_path)
    node = specs[1]
    kubelet = yaml.safe_load(configs.node_kubelet_config(lay, node))
    assert kubelet["cgroupRoot"] == "/mnlc-nodes/mnlc-node-2"
    assert kubelet["healthzBindAddress"] == node.ip and kubelet["podLogsDir"] == "/var/log/pods"
    paths = configs.ContainerdPaths.of_node(lay.node(node.name))
    containerd = tomllib.loads(configs.containerd_config(paths, runc="/r", cni_bin_dir="/c"))
    # deploy/base's hostPath volumes name the standard paths: the node's containerd serves there.
    assert containerd["plugins"]["io.containerd.nri.v1.nri"]["socket_path"] == "/run/nri/nri.sock"
    cni = containerd["plugins"]["io.containerd.cri.v1.runtime"]["cni"]
    assert cni["conf_dir"] == "/etc/cni/net.d"
    # The shims name containerd's socket: under the state dir, so cleanup knows them as ours.
    assert containerd["grpc"]["address"].startswith(str(tmp_path))


def test_oci_tarball_is_a_consistent_image_layout() -> None:
    layer = _layer([FileEntry("bin", 0o755), FileEntry("bin/hello", 0o755, data=b"hi")])
    blob = pack_oci("example.test/x:1", layer, {"Cmd": ["/bin/hello"]})
    assert pack_oci("example.test/x:1", layer, {"Cmd": ["/bin/hello"]}) == blob  # reproducible
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]

    def blob_of(digest: str) -> bytes:
        data = files["blobs/sha256/" + digest.removeprefix("sha256:")]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "example.test/x:1"
    manifest = json.loads(blob_of(entry["digest"]))
    config = json.loads(blob_of(manifest["config"]["digest"]))
    (layer_desc,) = manifest["layers"]
    assert blob_of(layer_desc["digest"]) == layer
    assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
    assert config["config"]["Cmd"] == ["/bin/hello"]


def test_managed_process_has_pid_file_log_and_stops(tmp_path: Path) -> None:
    procs = ProcessTable(tmp_path / "pids", tmp_path / "logs")
    pid = procs.start("sleeper", ["sh", "-c", "echo started; exec sleep 300"])
    try:
        assert procs.pid("sleeper") == pid and procs.alive("sleeper")
        wait_for(lambda: "started" in procs.tail("sleeper"), timeout=5, what="log line")
        with pytest.raises(RuntimeError, match="already running"):
            procs.start("sleeper", ["sleep", "1"])
    finally:
        procs.stop("sleeper", grace=2)
    assert not procs.alive("sleeper") and proc_start_time(pid) is None
    assert not (tmp_path / "pids" / "sleeper.pid").exists()


def test_a_reused_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    procs = ProcessTable(tmp_path / "pids", tmp_path / "logs")
    (tmp_path / "pids").mkdir()
    # PID 1 is alive, but it did not start at tick 1: not the process we recorded.
    (tmp_path / "pids" / "ghost.pid").write_text(
        json.dumps({"pid": 1, "start_time": 1, "argv": ["ghost"]})
    )
    assert procs.pid("ghost") is None
    procs.stop("ghost")  # must not signal PID 1
    assert proc_start_time(1) is not None


def test_a_component_that_exits_fails_fast_with_its_log(tmp_path: Path) -> None:
    cluster = Cluster(L.Layout(tmp_path), "node-a", "192.0.2.9")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "broken.log").write_text("===== earlier start\nan old run's line\n")
    broken = Component("broken", ["sh", "-c", "echo cannot bind 12379 >&2; exit 3"], lambda: False)
    with pytest.raises(ComponentFailed) as err:
        start_and_wait(cluster, [broken], lambda _: None, timeout=20)
    assert err.value.name == "broken"
    assert err.value.log == tmp_path / "logs" / "broken.log"
    assert "cannot bind 12379" in str(err.value) and str(err.value.log) in str(err.value)
    assert "an old run's line" not in str(err.value)


def test_k8s_version_chooses_the_binaries_and_a_bad_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MULTINET_CACHE", str(tmp_path))
    pinned = L.pinned_versions()["KUBERNETES_VERSION"]
    monkeypatch.delenv("K8S_VERSION", raising=False)
    assert L.kubernetes_version() == pinned and L.bin_dir() == tmp_path / "bin"
    monkeypatch.setenv("K8S_VERSION", pinned.removeprefix("v"))
    assert L.bin_dir() == tmp_path / "bin"  # the default, however it is spelled
    monkeypatch.setenv("K8S_VERSION", "1.34.4")
    assert L.versions()["KUBERNETES_VERSION"] == "v1.34.4"
    assert L.bin_dir() == tmp_path / "bin-v1.34.4"
    monkeypatch.setenv("K8S_VERSION", "1.34")
    with pytest.raises(ValueError, match="expected a release like"):
        L.kubernetes_version()


def test_the_matrix_table_sorts_results_into_features_and_names_what_failed() -> None:
    from localcluster.matrix import Run, table

    ok = Run("v1.36.3", build_seconds=1, test_seconds=300)
    ok.outcomes = {
        ("test_attach_e2e", "test_two_pods_share_one_nic_in_macvlan_mode"): True,
        ("test_health_e2e", "test_kubelet_health_stream_runs_without_errors"): True,
    }
    old = Run("v1.34.4", build_seconds=900, test_seconds=310)
    old.outcomes = {
        ("test_attach_e2e", "test_two_pods_share_one_nic_in_macvlan_mode"): False,
        ("test_health_e2e", "test_kubelet_health_stream_runs_without_errors"): True,
    }
    broken = Run("v1.37.2", error="build failed (1)")
    text = table([old, ok, broken])
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    assert rows["macvlan sharing"].split(" | ")[1:] == ["FAIL 0/1", "pass 1/1", "n/a |"]
    assert rows["health stream"].split(" | ")[1:3] == ["pass 1/1", "pass 1/1"]
    assert rows["pool IPAM"].split(" | ")[1] == "no test ran"
    assert "- v1.34.4 macvlan sharing: test_two_pods_share_one_nic_in_macvlan_mode" in text


def test_the_matrix_says_why_a_feature_does_not_apply_on_a_version() -> None:
    from localcluster.matrix import Run, table

    old = Run("v1.34.4")
    old.skipped = {
        ("test_health_e2e", "test_kubelet_health_stream_runs_without_errors"): "gate off"
    }
    row = next(line for line in table([old]).splitlines() if line.startswith("| health stream"))
    assert row == "| health stream | n/a: gate off |"
