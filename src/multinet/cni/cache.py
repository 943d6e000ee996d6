"""One file per attachment holding everything its DEL needs, so DEL works after a restart.

Location: `<cache_dir>/<file_name(key)>`. `cache_dir` is the caller's and must outlive the
process (the agent: a directory under its state dir). The file name is the key with every
character outside `[A-Za-z0-9_-]` replaced by `_` (at most 64 of them), then `-` and 16 hex
digits of the key's SHA-256, so two keys never share a file and no key escapes the directory.

Format: a JSON object, `Record` below: `version` (1), `key`, `state`, `config` (the chain as a
conflist: `cniVersion`, `name`, `plugins`, `disableCheck` when set), `container_id`, `netns`,
`ifname`, `device`, `pod` (`namespace`, `name`, `uid`), `runtime` (the capability values) and
`result` (the final result of the ADD, null until it finished).

Lifecycle: `create` with state `adding` before the first plugin runs (a crash mid-ADD still
leaves what DEL needs), `replace` with state `added` and the result before ADD returns, `remove`
after a successful DEL (or the rollback of a failed ADD).

Every write is atomic: a temporary file in the same directory, fsync, then a hard link
(`create`: fails when a record exists, which is never overwritten) or a rename (`replace`), then
an fsync of the directory. A crash may leave a `*.tmp` file behind; nothing reads those.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from multinet.cni.errors import CniError
from multinet.cni.invocation import PodRef, RuntimeArgs

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")  # no dots: no hidden files, no ".."


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    key: str
    state: Literal["adding", "added"]
    config: dict[str, Any]
    container_id: str
    netns: str
    ifname: str
    device: str | None = None
    pod: PodRef
    runtime: RuntimeArgs = RuntimeArgs()
    result: dict[str, Any] | None = None


def file_name(key: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{_UNSAFE.sub('_', key)[:64]}-{digest}.json"


def path_for(cache_dir: str | os.PathLike[str], key: str) -> Path:
    return Path(cache_dir) / file_name(key)


def read(path: Path) -> Record | None:
    """The record at `path`, None when there is none; CniError when it cannot be trusted."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CniError(f"CNI cache {path} cannot be read: {exc}") from exc
    try:
        return Record.model_validate(json.loads(raw))
    except (ValueError, ValidationError, RecursionError) as exc:
        raise CniError(f"CNI cache {path} is damaged: {str(exc)[:300]}") from exc


def create(path: Path, record: Record) -> None:
    """Write a new record; CniError if one is already there (it is left as it is)."""
    _write(path, record, exclusive=True)


def replace(path: Path, record: Record) -> None:
    _write(path, record, exclusive=False)


def remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
        _sync_dir(path.parent)
    except OSError as exc:
        raise CniError(f"CNI cache {path} cannot be removed: {exc}") from exc


def _write(path: Path, record: Record, *, exclusive: bool) -> None:
    data = json.dumps(record.model_dump(mode="json"), indent=1).encode()
    tmp: Path | None = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)  # atomic, and refuses to replace an existing record
        else:
            os.rename(tmp, path)
            tmp = None
        _sync_dir(path.parent)
    except FileExistsError:
        raise CniError(
            f"CNI cache {path} already holds an attachment for key {record.key!r}; "
            "delete it before adding again"
        ) from None
    except OSError as exc:
        raise CniError(f"CNI cache {path} cannot be written: {exc}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
