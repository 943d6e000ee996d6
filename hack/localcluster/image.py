"""The multinet image, built from the project's Dockerfile without Docker.

This machine has no Docker engine and reaches no container registry, yet multinet must run as
deploy/base's pods from an image, and users with Docker must keep getting the same image from the
same Dockerfile. So:

- the base is Debian bookworm with python3, made of Debian packages by mmdebstrap (from the mirror
  apt uses here) and imported into buildah's store as BASE_REF;
- buildah builds the real Dockerfile on it (`--build-arg BASE_IMAGE=BASE_REF`) with chroot
  isolation and vfs storage under <cache>/buildah: no daemon, nothing written to the checkout;
- the result is pushed to an OCI archive <cache>/images/multinet-<key>.oci.tar whose index names
  the image REF, so `ctr images import` names it REF. The key is the sha256 of every input (the
  Dockerfile, every file it copies, the base's recipe), so a warm build is a few reads and a stat.

    python -m localcluster.image build [--ref REF]    # prints the archive's path
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from . import layout as L
from .images import import_tarball

Say = Callable[[str], None]

#: What `build` tags by default: the Makefile's IMAGE, the image deploy/base names.
DEFAULT_REF = L.MULTINET_IMAGE
#: The Debian base in buildah's store; the Dockerfile's BASE_IMAGE when we build.
BASE_REF = "localhost/multinet-base:bookworm"
BASE_SUITE = "bookworm"
#: On top of the essential set (dpkg, coreutils, bash, ...): the interpreter, its venv module (the
#: Dockerfile installs into a virtualenv), the CA bundle (pip fetches over TLS) and the C++
#: runtime protobuf's and frozenlist's extensions link against (python:3.11-slim has it too). No
#: apt, no perl, no iproute2: the agent speaks netlink itself (pyroute2).
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "libstdc++6")
_MMDEBSTRAP_OPTIONS = (
    "--variant=essential",
    # usr-is-merged instead of the usrmerge package (which drags perl in).
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    # Nobody reads manuals, translations or docs in a container; licences stay.
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    # Device nodes belong to the runtime, not to a layer.
    "--skip=output/dev",
)
#: The label on BASE_REF recording which recipe made it.
_BASE_LABEL = "dev.multinet.base-key"
#: Bump when the build below changes in a way the inputs do not show, so archives are rebuilt.
_FORMAT = "buildah-oci-1"
#: Files of the checkout the Dockerfile reads, besides src/ (README.md is the package's readme).
_CONTEXT_FILES = ("Dockerfile", "pyproject.toml", "requirements.lock", "README.md")
#: Archives kept in <cache>/images (newest first): each edit of src/ makes a new ~70 MB one.
_KEEP_ARCHIVES = 3
#: Where Debian (and so the base) keeps its CA bundle. The build's RUN steps see the host's
#: bundle there instead (a bind mount, never committed): pip reaches the package index through
#: whatever this machine trusts, and the image ships Debian's bundle untouched.
_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageError(RuntimeError):
    """A build step failed or a tool is missing; the message says what to do."""


def _quiet(_: str) -> None:
    pass


def _buildah_dir() -> Path:
    return L.cache_dir() / "buildah"


def buildah_command(*args: str) -> list[str]:
    """buildah on our own store (vfs under <cache>/buildah): never the machine's default store."""
    store = _buildah_dir()
    return [
        _tool("buildah"),
        "--root",
        str(store / "root"),
        "--runroot",
        str(store / "run"),
        "--storage-driver",
        "vfs",
        *args,
    ]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ImageError(
            f"{name} is not installed; run hack/install-deps.sh as root "
            "(it installs the Debian packages buildah and mmdebstrap)"
        )
    return path


def _env() -> dict[str, str]:
    """buildah writes big temporary files (layers being committed) to TMPDIR: keep them with the
    store instead of /var/tmp."""
    tmp = _buildah_dir() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmp))


def _run(argv: Sequence[str], what: str, log: Path | None = None) -> str:
    """Run a build step; its output goes to `log` (long: mmdebstrap, bud) or is returned.

    A failure raises ImageError with the step, the exit code and the output's last lines."""
    if log is not None:
        with log.open("a") as out:
            out.write(f"\n$ {' '.join(argv)}\n")
            out.flush()
            proc = subprocess.run(
                list(argv), stdout=out, stderr=subprocess.STDOUT, text=True, env=_env()
            )
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise ImageError(f"{what} failed (exit {proc.returncode}); full log {log}:\n{tail}")
        return ""
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise ImageError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


# --- inputs and the key -------------------------------------------------------------------------
def _git_src_files() -> list[str] | None:
    """src/ as git sees it (tracked, plus new files not ignored); None without git or a checkout."""
    git = shutil.which("git")
    if git is None:
        return None
    argv = [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "src"]
    listed = subprocess.run(argv, cwd=L.REPO_ROOT, capture_output=True, text=True)
    return [p for p in listed.stdout.split("\0") if p] if listed.returncode == 0 else None


def input_files() -> list[str]:
    """Every file the build reads, relative to the checkout: _CONTEXT_FILES and src/.

    src/ as git sees it: no __pycache__, no editor debris, so the key and the build context are
    the same set of files. Without git (an unpacked sdist): every file but bytecode."""
    src = _git_src_files()
    if src is None:
        src = [
            str(p.relative_to(L.REPO_ROOT))
            for p in (L.REPO_ROOT / "src").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    # A tracked file deleted in the work tree is not an input.
    src = [p for p in src if (L.REPO_ROOT / p).is_file()]
    return [*_CONTEXT_FILES, *sorted(set(src))]


def _base_recipe() -> list[str]:
    return [BASE_SUITE, *BASE_PACKAGES, *_MMDEBSTRAP_OPTIONS]


def _base_key() -> str:
    return hashlib.sha256("\0".join(_base_recipe()).encode()).hexdigest()[:20]


def _key(ref: str, root: Path, files: Sequence[str]) -> str:
    h = hashlib.sha256()
    for part in (_FORMAT, ref, *_base_recipe()):
        h.update(part.encode() + b"\0")
    for rel in files:
        h.update(rel.encode() + b"\0")
        h.update((root / rel).read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:20]


def image_key(ref: str = DEFAULT_REF) -> str:
    """sha256 over the recipe version, the ref (it is written into the archive), the base's
    recipe and every input file's path and content."""
    return _key(ref, L.REPO_ROOT, input_files())


def _archive(key: str) -> Path:
    return L.cache_dir() / "images" / f"multinet-{key}.oci.tar"


def archive_path(ref: str = DEFAULT_REF) -> Path:
    """Where the archive of `ref` built from the checkout as it is now lives (or will)."""
    return _archive(image_key(ref))


# --- the base -----------------------------------------------------------------------------------
def _deb822_mirrors(text: str) -> tuple[str, str]:
    """(main, security) URIs of a deb822 sources file: the first stanza of each kind."""
    main, security = "", ""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "#")):
                fields[key.strip()] = value.strip()
        uris = fields.get("URIs", "").split()
        if not uris:
            continue
        if any(s.endswith("-security") for s in fields.get("Suites", "").split()):
            security = security or uris[0]
        else:
            main = main or uris[0]
    return main, security


def _mirror_lines() -> list[str]:
    """apt source lines for the base: the mirrors this machine's apt uses (the deb822 file, as
    hack/build-binaries.sh reads it), for bookworm, its updates and its security suite. Empty
    when none is found: mmdebstrap then uses its default mirror."""
    main, security = "", ""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        main, security = _deb822_mirrors(sources.read_text())
    legacy = Path("/etc/apt/sources.list")
    if not main and legacy.is_file():
        debs = [line.split() for line in legacy.read_text().splitlines()]
        uris = [w for words in debs if words[:1] == ["deb"] for w in words[1:] if "://" in w]
        main = uris[0] if uris else ""
    if not main:
        return []
    lines = [f"deb {main} {BASE_SUITE} main", f"deb {main} {BASE_SUITE}-updates main"]
    if security:
        lines.append(f"deb {security} {BASE_SUITE}-security main")
    return lines


def _base_is_current(key: str) -> bool:
    proc = subprocess.run(
        buildah_command(
            "inspect",
            "--type",
            "image",
            "--format",
            f'{{{{index .OCIv1.Config.Labels "{_BASE_LABEL}"}}}}',
            BASE_REF,
        ),
        capture_output=True,
        text=True,
        env=_env(),
    )
    return proc.returncode == 0 and proc.stdout.strip() == key


def ensure_base(workdir: Path, log: Path, say: Say = _quiet) -> None:
    """BASE_REF in buildah's store, made by the current recipe (built when missing or stale)."""
    key = _base_key()
    if _base_is_current(key):
        return
    rootfs = workdir / "base.tar"
    started = time.monotonic()
    say(f"base: Debian {BASE_SUITE} + {', '.join(BASE_PACKAGES)} with mmdebstrap (log {log})")
    _run(
        [
            _tool("mmdebstrap"),
            *_MMDEBSTRAP_OPTIONS,
            f"--include={','.join(BASE_PACKAGES)}",
            BASE_SUITE,
            str(rootfs),
            *_mirror_lines(),
        ],
        "mmdebstrap",
        log,
    )
    container = _run(buildah_command("from", "--pull=never", "scratch"), "buildah from scratch")
    try:
        _run(buildah_command("add", container, str(rootfs), "/"), "buildah add (the rootfs)")
        _run(
            buildah_command(
                "config",
                "--env",
                _PATH_ENV,
                "--cmd",
                '["python3"]',
                "--label",
                f"{_BASE_LABEL}={key}",
                container,
            ),
            "buildah config",
        )
        _run(buildah_command("commit", "--quiet", container, BASE_REF), "buildah commit")
    finally:
        subprocess.run(buildah_command("rm", container), capture_output=True, env=_env())
    rootfs.unlink()
    say(f"base: {BASE_REF} in {time.monotonic() - started:.0f} s")


# --- the image ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _build_lock(say: Say) -> Iterator[None]:
    """One build at a time per cache: concurrent callers wait, then find the archive made."""
    path = _buildah_dir() / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another image build (lock {path})")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stage_context(dest: Path) -> list[str]:
    """Copy exactly the input files, nothing else, and return their names: the key computed
    from this copy describes the whole build context, even if the checkout changes meanwhile."""
    files = input_files()
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(L.REPO_ROOT / rel, target)
    return files


def _prune(images: Path) -> None:
    """Keep the newest _KEEP_ARCHIVES archives (and their build logs); drop the untagged images
    older builds left in buildah's store."""
    archives = sorted(
        images.glob("multinet-*.oci.tar"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    kept = {a.with_suffix(".log") for a in archives[:_KEEP_ARCHIVES]}
    logs = [g for g in images.glob("multinet-*.oci.log") if g not in kept]
    for old in [*archives[_KEEP_ARCHIVES:], *images.glob("multinet-*.oci.tmp"), *logs]:
        old.unlink(missing_ok=True)
    subprocess.run(buildah_command("rmi", "--prune"), capture_output=True, env=_env())


def _build(ref: str, context: Path, out: Path, workdir: Path, say: Say) -> None:
    log = out.with_suffix(".log")
    log.write_text("")
    started = time.monotonic()
    ensure_base(workdir, log, say)
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or _CA_BUNDLE
    mounts = ["--volume", f"{ca}:{_CA_BUNDLE}:ro"] if Path(ca).is_file() else []
    say(f"building {ref} from the Dockerfile with buildah (log {log})")
    _run(
        buildah_command(
            "bud",
            "--isolation",
            "chroot",
            "--pull=never",
            *mounts,
            "--build-arg",
            f"BASE_IMAGE={BASE_REF}",
            "--file",
            str(context / "Dockerfile"),
            "--tag",
            ref,
            str(context),
        ),
        "buildah bud",
        log,
    )
    tmp = out.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    _run(
        buildah_command("push", "--quiet", ref, f"oci-archive:{tmp}:{ref}"),
        "buildah push (to an OCI archive)",
        log,
    )
    tmp.replace(out)
    say(f"{ref}: {out} ({out.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - started:.0f} s")


def multinet_image_tarball(ref: str = DEFAULT_REF, say: Say = _quiet) -> Path:
    """The OCI archive of the multinet image named `ref`, built from the checkout as it is now
    (or found cached: then no tool runs at all)."""
    out = archive_path(ref)
    if out.exists():
        return out
    if ":" in str(out):
        raise ImageError(f"the cache path {out} has a ':', which oci-archive: cannot take")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _buildah_dir() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    with _build_lock(say), tempfile.TemporaryDirectory(dir=tmp) as d:
        work = Path(d)
        files = _stage_context(work / "context")
        out = _archive(_key(ref, work / "context", files))
        if not out.exists():  # else built by whoever held the lock before us
            _build(ref, work / "context", out, work, say)
            _prune(out.parent)
    return out


def import_image(ctr: Path, address: Path, tarball: Path) -> None:
    """Import the archive into the containerd at `address`, namespace k8s.io (the kubelet's),
    under the name its index gives (idempotent)."""
    try:
        import_tarball(ctr, address, tarball)
    except RuntimeError as exc:
        raise ImageError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.image", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build the image (or find it cached); print the archive")
    build.add_argument("--ref", default=DEFAULT_REF, help=f"image name (default {DEFAULT_REF})")
    args = parser.parse_args(argv)

    def say(msg: str) -> None:
        print(f"[image] {msg}", file=sys.stderr, flush=True)

    try:
        print(multinet_image_tarball(args.ref, say=say))
    except ImageError as exc:
        say(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
