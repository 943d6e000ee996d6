"""The pause and test images: built here, packed as OCI image-layout tarballs, imported.

No Docker and no registry: a layer is a plain tar we write ourselves, the config and manifest are
JSON, every blob is named by its sha256. Tarballs are cached under <cache>/images keyed by the
sha256 of their inputs, so a warm `up` only re-imports them.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import layout as L

#: Bump when the packing below changes, so cached tarballs are rebuilt.
_FORMAT = "oci-pack-1"
_PAUSE_SOURCE = L.REPO_ROOT / "hack" / "images" / "pause.c"
_BUSYBOX = Path("/bin/busybox")
_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class FileEntry:
    """One member of a layer: a directory, a regular file (data) or a symlink (target)."""

    path: str
    mode: int
    data: bytes | None = None
    link: str | None = None


def _layer(entries: list[FileEntry]) -> bytes:
    """An uncompressed, reproducible layer tar (fixed mtime/owner, sorted members)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(e.path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.mode = e.mode
            if e.link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = e.link
                tar.addfile(info)
            elif e.data is not None:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pack_oci(ref: str, layer: bytes, config: dict[str, object]) -> bytes:
    """An OCI image-layout tarball holding one single-layer linux/amd64 image named `ref`."""
    image_config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
    }
    config_blob = json.dumps(image_config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _digest(config_blob),
            "size": len(config_blob),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": _digest(layer),
                "size": len(layer),
            }
        ],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True).encode()
    tag = ref.rsplit(":", 1)[1]
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": _digest(manifest_blob),
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
    }
    for blob in (layer, config_blob, manifest_blob):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    entries = [FileEntry("blobs", 0o755), FileEntry("blobs/sha256", 0o755)]
    entries += [FileEntry(name, 0o644, data=data) for name, data in files.items()]
    return _layer(entries)


def _base_dirs() -> list[FileEntry]:
    return [FileEntry(d, 0o755) for d in ("dev", "etc", "proc", "sys", "var", "root")] + [
        FileEntry("tmp", 0o1777)
    ]


def _build_pause(workdir: Path) -> bytes:
    out = workdir / "pause"
    subprocess.run(
        ["gcc", "-static", "-Os", "-s", "-o", str(out), str(_PAUSE_SOURCE)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.read_bytes()


def _busybox_entries() -> list[FileEntry]:
    """/bin/busybox plus one symlink per applet, at the paths busybox itself lists."""
    listing = subprocess.run(
        [str(_BUSYBOX), "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    entries = [FileEntry("bin/busybox", 0o755, data=_BUSYBOX.read_bytes())]
    dirs = {"bin"}
    for listed in listing:
        path = listed.strip("/")
        if path == "bin/busybox":
            continue
        parent = path.rsplit("/", 1)[0]
        for i in range(1, parent.count("/") + 2):
            dirs.add("/".join(parent.split("/")[:i]))
        entries.append(FileEntry(path, 0o777, link="/bin/busybox"))
    entries += [FileEntry(d, 0o755) for d in sorted(dirs)]
    return entries


def _cached(name: str, key_parts: list[bytes], build: Callable[[], bytes]) -> Path:
    key = hashlib.sha256(b"\0".join([_FORMAT.encode(), *key_parts])).hexdigest()[:20]
    out = L.cache_dir() / "images" / f"{name}-{key}.oci.tar"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    data: bytes = build()
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return out


def pause_tarball() -> Path:
    def build() -> bytes:
        with tempfile.TemporaryDirectory() as d:
            binary = _build_pause(Path(d))
        layer = _layer([*_base_dirs(), FileEntry("pause", 0o755, data=binary)])
        return pack_oci(L.PAUSE_IMAGE, layer, {"Entrypoint": ["/pause"], "User": "65535:65535"})

    return _cached("pause", [_PAUSE_SOURCE.read_bytes()], build)


def test_tarball() -> Path:
    def build() -> bytes:
        layer = _layer([*_base_dirs(), *_busybox_entries()])
        return pack_oci(L.TEST_IMAGE, layer, {"Env": [_PATH_ENV], "Cmd": ["sh"]})

    return _cached("busybox", [_BUSYBOX.read_bytes()], build)


def import_tarball(ctr: Path, address: Path, tarball: Path) -> None:
    """Import an OCI archive into the containerd at `address`, namespace k8s.io (the kubelet's),
    under the name its index gives (idempotent). Raises RuntimeError with ctr's message."""
    argv = [str(ctr), "--address", str(address), "-n", "k8s.io", "images", "import"]
    proc = subprocess.run(
        [*argv, "--platform", "linux/amd64", str(tarball)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"importing {tarball} failed: {proc.stderr.strip()}")


def import_images(ctr: Path, address: Path) -> list[str]:
    """Import both images into containerd's k8s.io namespace (idempotent); returns the refs."""
    for tarball in (pause_tarball(), test_tarball()):
        import_tarball(ctr, address, tarball)
    return [L.PAUSE_IMAGE, L.TEST_IMAGE]


def have_compiler() -> bool:
    return shutil.which("gcc") is not None
