"""`make image` without Docker (hack/localcluster/image.py), checked as a user would check it.

The image is really built (buildah on the Debian base; cached under MULTINET_CACHE, so only the
first run after an input changed pays for it) and then: its OCI archive names the image the
manifests use; its config runs `multinet`; its filesystem holds the console script on PATH and
this checkout's package; both programs start in it; a private containerd imports it under that
name, as the cluster's does; a second build with the same inputs is a no-op.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from helpers import wait_for
from localcluster import image
from localcluster import layout as L

pytestmark = pytest.mark.root

SITE = "opt/multinet/lib/python3.11/site-packages"


@dataclass(frozen=True)
class Oci:
    """What the archive says: its index, the manifest, the image config, every layer's files."""

    index: dict[str, Any]
    manifest: dict[str, Any]
    config: dict[str, Any]
    #: path (no leading /) -> content for regular files, or "-> target" for symlinks.
    files: dict[str, bytes]


def _read_oci(tarball: Path) -> Oci:
    with tarfile.open(tarball) as outer:

        def blob(digest: str) -> IO[bytes]:
            f = outer.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
            assert f is not None, digest
            return f

        index_file = outer.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        (entry,) = index["manifests"]
        manifest = json.load(blob(entry["digest"]))
        config = json.load(blob(manifest["config"]["digest"]))
        files: dict[str, bytes] = {}
        for layer in manifest["layers"]:  # lowest first: later layers overwrite
            with tarfile.open(fileobj=blob(layer["digest"]), mode="r|*") as tar:
                for m in tar:
                    name = m.name.removeprefix("./")
                    if m.issym():
                        files[name] = f"-> {m.linkname}".encode()
                    elif m.isfile():
                        data = tar.extractfile(m)
                        assert data is not None
                        files[name] = data.read()
    return Oci(index, manifest, config, files)


@pytest.fixture(scope="module")
def tarball() -> Path:
    return image.multinet_image_tarball(say=print)


@pytest.fixture(scope="module")
def oci(tarball: Path) -> Oci:
    return _read_oci(tarball)


def test_the_default_ref_is_the_makefiles_image() -> None:
    makefile = (L.REPO_ROOT / "Makefile").read_text()
    match = re.search(r"^IMAGE \?= (\S+)$", makefile, re.M)
    assert match and match.group(1) == image.DEFAULT_REF == L.MULTINET_IMAGE
    assert "-m localcluster.image build --ref $(IMAGE)" in makefile


def test_the_archive_index_names_the_image(tarball: Path, oci: Oci) -> None:
    assert tarball.parent == L.cache_dir() / "images"
    assert tarball.name == f"multinet-{image.image_key()}.oci.tar"
    (entry,) = oci.index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == image.DEFAULT_REF
    assert oci.config["os"] == "linux" and oci.config["architecture"] == "amd64"


def test_the_config_runs_multinet_from_the_virtualenv_on_path(oci: Oci) -> None:
    cfg = oci.config["config"]
    assert cfg["Entrypoint"] == ["multinet"] and cfg["Cmd"] == ["--help"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["PATH"].split(":")[0] == "/opt/multinet/bin"


def test_the_filesystem_holds_the_console_script_and_this_checkouts_package(oci: Oci) -> None:
    path = dict(e.split("=", 1) for e in oci.config["config"]["Env"])["PATH"].split(":")
    scripts = [d for d in path if d.lstrip("/") + "/multinet" in oci.files]
    assert scripts == ["/opt/multinet/bin"], "exactly one `multinet` on PATH, the venv's"
    script = oci.files["opt/multinet/bin/multinet"].decode()
    assert script.startswith("#!/opt/multinet/bin/python3") and "multinet.cli import main" in script
    # The code in the image is the checkout's, byte for byte (not a stale build).
    src = L.REPO_ROOT / "src" / "multinet"
    for rel in ("cli.py", "__init__.py"):
        assert oci.files[f"{SITE}/multinet/{rel}"] == (src / rel).read_bytes(), rel
    assert any(n.startswith(f"{SITE}/pyroute2/") for n in oci.files)
    # The Debian base: its python3, no wheels or build venv left behind.
    assert "usr/bin/python3" in oci.files and "usr/bin/apt-get" not in oci.files
    assert not [n for n in oci.files if n.startswith(("wheels/", "opt/build/", "src/"))]


def _buildah(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(image.buildah_command(*args), capture_output=True, text=True, check=True)


#: Imports every module of the package: `--help` alone imports few of them (protobuf, whose
#: extension needs the base's libstdc++, only when the agent serves the kubelet).
IMPORT_ALL = """
import importlib, pkgutil, multinet
names = [m.name for m in pkgutil.walk_packages(multinet.__path__, "multinet.")]
for name in names:
    if not name.endswith("__main__"):
        importlib.import_module(name)
print(len(names))
"""


def test_both_programs_start_in_the_image_and_every_module_imports(tarball: Path) -> None:
    container = _buildah("from", "--pull=never", image.DEFAULT_REF).stdout.strip()

    def run(*argv: str) -> str:
        return _buildah("run", "--isolation", "chroot", container, "--", *argv).stdout

    try:
        for argv in (["--help"], ["node-agent", "--help"], ["controller", "--help"]):
            assert "usage: multinet" in run("multinet", *argv), argv
        assert int(run("python3", "-c", IMPORT_ALL)) > 50
    finally:
        _buildah("rm", container)


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Path]:
    """A private containerd (no CRI, no NRI) serving at the returned socket."""
    socket = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(f"""version = 3
root = "{tmp_path}/root"
state = "{tmp_path}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images",
  "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
""")
    with (tmp_path / "containerd.log").open("w") as log:
        proc = subprocess.Popen(
            [str(L.bin_dir() / "containerd"), "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: socket.is_socket() or proc.poll() is not None, what="containerd socket")
        assert proc.poll() is None, (tmp_path / "containerd.log").read_text()
        yield socket
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_containerd_imports_it_under_the_image_name(tarball: Path, containerd: Path) -> None:
    ctr = L.bin_dir() / "ctr"
    image.import_image(ctr, containerd, tarball)
    listed = subprocess.run(
        [str(ctr), "--address", str(containerd), "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == [image.DEFAULT_REF]


def test_the_key_covers_every_file_the_dockerfile_copies() -> None:
    inputs = image.input_files()
    dockerfile = (L.REPO_ROOT / "Dockerfile").read_text()
    copied = [
        src
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for src in line.split()[1:-1]
    ]
    assert copied, "the Dockerfile copies nothing from the checkout?"
    for src in copied:
        assert src in inputs or any(p.startswith(src.rstrip("/") + "/") for p in inputs), src
    assert "Dockerfile" in inputs and "src/multinet/cli.py" in inputs
    assert not [p for p in inputs if "__pycache__" in p or p.endswith(".pyc")]
    assert image.image_key("example.test/other:1") != image.image_key()


def test_a_rebuild_with_unchanged_inputs_is_a_no_op(tarball: Path) -> None:
    # The first call builds only if someone edited an input since the fixture ran.
    first = image.multinet_image_tarball()
    mtime = first.stat().st_mtime_ns
    said: list[str] = []
    started = time.monotonic()
    again = image.multinet_image_tarball(say=said.append)
    took = time.monotonic() - started
    assert again == first and again.stat().st_mtime_ns == mtime
    assert said == [], "nothing was built, nothing said"
    assert took < 2.0, f"a warm build took {took:.2f} s"
