"""Adapter: the checkpoint file's format and reading it back under the recovery rule.

`multinet.checkpoint` writes the file (atomically, with group commit) and calls
`read_checkpoint` at start-up; this module holds what a file is and what loading one does.

Format (version 2): the `AgentState` as a JSON object plus `"checksum": "sha256:<hex>"`,
the SHA-256 of the canonical payload: every top-level field except `checksum`, dumped with
`json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, UTF-8 (lone
surrogates passed through).

Recovery rule when loading (`Checkpoint.open`), from the outside in:
1. No file: empty state. A file that cannot be read at all (I/O error): CheckpointError, the agent
   does not start (it must not act as if it had no state while its state is just unreachable).
2. Written by a NEWER agent (version above `VERSION`): CheckpointError naming both versions; the
   file is left untouched and the agent does not start. Rolling back past a format change would
   otherwise silently forget every prepared claim and every NIC in a pod; refusing keeps the
   state for the newer agent and tells the operator what to do (roll forward again, or, to
   discard the state deliberately, move the file away).
3. The whole file is unusable: not JSON (also nested too deeply to parse), not an object, no or
   an unknown older version, a missing or wrong checksum (silent corruption: some bytes changed
   and nothing says which, so no entry of it is trusted, nothing is salvaged), a migration that
   fails, unknown top-level fields, `claims`/`attachments` not objects. The file is moved aside
   as `<file>.corrupt-<UTC time>-<random>` (unique: two corruptions never overwrite each other),
   logged at ERROR, and the agent starts empty.
4. Older versions are read through `MIGRATIONS` (version -> function returning the next
   version's document), one step at a time; the file is rewritten in the current format by the
   next write.
5. Entry by entry: each claim and each attachment is validated on its own, and must also be
   writable back (an entry that loads but cannot be serialised, e.g. nested too deeply, would
   fail every later write). A bad entry is QUARANTINED: the file as read is copied verbatim to
   `<file>.quarantine-<UTC time>-<random>` (the evidence, once per load), the entry is logged at
   ERROR with its key and reason, and dropped; the other entries are kept. The cleaned state is
   written at once so the quarantine happens once. `Checkpoint.quarantined` lists what was set
   aside (section, key, reason, where the evidence is; a whole-file corruption of rule 3 is listed
   too, as section "file") so the agent can report it as Kubernetes Events.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from multinet.errors import CheckpointError
from multinet.plans import AgentState, Attachment, PreparedClaim

# The records keep the logger name they had before loading moved out of multinet.checkpoint.
log = logging.getLogger("multinet.checkpoint")

VERSION: int = AgentState().version
"""The file format this agent writes; it reads this one and, through MIGRATIONS, older ones."""

Section = Literal["claims", "attachments", "file"]


def _from_v1(doc: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: v2 only adds the file checksum (v1 files have none); the entries are unchanged."""
    return {**doc, "version": 2}


MIGRATIONS: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_v1}
"""Older format version -> the function turning its document into the next version's."""


@dataclass(frozen=True)
class Quarantined:
    """What loading set aside: one entry (by its key), or the whole file (section "file")."""

    section: Section
    key: str  # claim UID, plan key, or the file name
    reason: str
    kept_in: Path  # the verbatim copy (entries) or the moved file (whole file)

    def describe(self) -> str:
        """One sentence for a human: what was lost, why, and where to look."""
        if self.section == "file":
            return (
                f"checkpoint {self.key} was unreadable ({self.reason}) and was moved to "
                f"{self.kept_in}; the agent started with an empty state: prepared claims and "
                "interfaces in pods it held need manual inspection"
            )
        what = "claim" if self.section == "claims" else "attachment"
        return (
            f"checkpoint {what} {self.key} could not be loaded ({self.reason}) and was dropped; "
            f"the file as read is kept in {self.kept_in}"
        )


@dataclass(frozen=True)
class Loaded:
    """The result of reading the file: the usable state and what was set aside."""

    state: AgentState
    quarantined: tuple[Quarantined, ...] = ()


M = TypeVar("M", bound=BaseModel)


class _Unusable(Exception):
    """The whole file is unusable (recovery rule 3): moved aside, start empty."""


def load_state(path: Path) -> AgentState:
    """The usable state in `path` (see `read_checkpoint`)."""
    return read_checkpoint(path).state


def read_checkpoint(path: Path) -> Loaded:
    """Reads `path` under the recovery rule of the module docstring. Moves an unusable file
    aside and copies a file with bad entries to a quarantine file; never writes `path`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        log.info("no checkpoint yet, starting empty", extra={"path": str(path)})
        return Loaded(AgentState())
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    try:
        doc = _current_document(path, raw)
        claims = _section(doc, "claims")
        attachments = _section(doc, "attachments")
    except _Unusable as exc:
        aside = _move_aside(path, str(exc))
        return Loaded(AgentState(), (Quarantined("file", path.name, str(exc), aside),))
    good_claims, bad_claims = _entries("claims", claims, PreparedClaim)
    good_attachments, bad_attachments = _entries("attachments", attachments, Attachment)
    state = AgentState(claims=good_claims, attachments=good_attachments)
    bad = bad_claims + bad_attachments
    if not bad:
        return Loaded(state)
    kept_in = _keep_copy(path, raw)
    quarantined = tuple(Quarantined(section, key, reason, kept_in) for section, key, reason in bad)
    for q in quarantined:
        log.error(
            "CHECKPOINT ENTRY QUARANTINED: dropped, the rest of the checkpoint is kept",
            extra={
                "path": str(path),
                "section": q.section,
                "key": q.key,
                "reason": q.reason,
                "kept_in": str(kept_in),
            },
        )
    return Loaded(state, quarantined)


def _current_document(path: Path, raw: bytes) -> dict[str, Any]:
    """The file as a current-version document: parsed, version checked, checksum verified,
    migrated. Raises CheckpointError for a newer version, _Unusable for everything else."""
    doc = _parse(raw)
    version = _readable_version(path, doc)
    if version >= 2:  # the first version with a checksum
        _verifychecksum(doc)
    doc = _migrate(doc, version)
    unknown = sorted(set(doc) - {"version", "claims", "attachments"})
    if unknown:
        raise _Unusable(f"unknown fields {', '.join(unknown)}")
    return doc


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except RecursionError as exc:
        raise _Unusable("JSON nested too deeply to parse") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _Unusable(str(exc)) from exc
    if not isinstance(parsed, dict):
        raise _Unusable("not a JSON object")
    return parsed


def _readable_version(path: Path, doc: Mapping[str, Any]) -> int:
    """The document's version if this agent reads it (directly or through MIGRATIONS)."""
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Unusable(f"unknown checkpoint version {version!r}")
    if version > VERSION:
        raise CheckpointError(
            f"checkpoint {path} was written by a newer node agent (format version {version}; "
            f"this agent reads up to {VERSION}). Refusing to start rather than discard that "
            "state: roll the node agent forward again, or, to discard the state knowingly, stop "
            "the agent and move the file away"
        )
    if version != VERSION and version not in MIGRATIONS:
        raise _Unusable(f"unknown checkpoint version {version!r}")
    return version


def _verifychecksum(doc: dict[str, Any]) -> None:
    """Removes the recorded checksum from `doc` and checks it against the rest."""
    recorded = doc.pop("checksum", None)
    if not isinstance(recorded, str):
        raise _Unusable("no checksum")
    actual = checksum(doc)
    if recorded != actual:
        raise _Unusable(f"checksum mismatch: recorded {recorded}, content has {actual}")


def _migrate(doc: dict[str, Any], version: int) -> dict[str, Any]:
    while version < VERSION:
        try:
            doc = MIGRATIONS[version](doc)
        except Exception as exc:  # any failure of an old document's shape: the file is unusable
            raise _Unusable(f"migration from version {version} failed: {exc}") from exc
        version = doc["version"]
    return doc


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise _Unusable(f"{name}: not a JSON object")
    return value


def _entries(
    section: Section, raw: dict[str, Any], model: type[M]
) -> tuple[dict[str, M], list[tuple[Section, str, str]]]:
    """Validates each entry on its own: (good entries by key, (section, key, reason) of bad)."""
    good: dict[str, M] = {}
    bad: list[tuple[Section, str, str]] = []
    for key, value in raw.items():
        try:
            entry = model.model_validate(value)
        except ValidationError as exc:
            bad.append((section, key, _validation_reason(exc)))
            continue
        except (ValueError, RecursionError) as exc:
            bad.append((section, key, f"cannot be validated: {exc}"))
            continue
        try:
            entry.model_dump_json()  # what every later write does: it must not fail there
        except (ValueError, RecursionError) as exc:
            bad.append((section, key, f"cannot be written back: {exc}"))
            continue
        good[key] = entry
    return good, bad


def _validation_reason(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or '(entry)'}: {err['msg']}"
        for err in exc.errors()[:3]
    ]
    more = exc.error_count() - len(problems)
    return "invalid: " + "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def checksum(doc: Mapping[str, Any]) -> str:
    """sha256 of the canonical form of `doc` (which must not hold the checksum itself)."""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _aside_path(path: Path, kind: str) -> Path:
    """A fresh `<file>.<kind>-<UTC time>-<random>` name: never one that exists already."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    while True:
        candidate = path.with_name(f"{path.name}.{kind}-{stamp}-{secrets.token_hex(4)}")
        if not os.path.lexists(candidate):
            return candidate


def _move_aside(path: Path, reason: str) -> Path:
    aside = _aside_path(path, "corrupt")
    try:
        path.rename(aside)
    except OSError as move_exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({reason}) and could not be moved aside: {move_exc}"
        ) from move_exc
    log.error(
        "CHECKPOINT UNREADABLE: moved aside, starting with an empty state; prepared claims "
        "and attachments it held are forgotten and need manual inspection",
        extra={"path": str(path), "moved_to": str(aside), "reason": reason},
    )
    return aside


def _keep_copy(path: Path, raw: bytes) -> Path:
    """A durable verbatim copy of the file as read: the evidence of quarantined entries."""
    copy = _aside_path(path, "quarantine")
    try:
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(fd, raw)
        finally:
            os.close(fd)
    except OSError as exc:
        raise CheckpointError(
            f"checkpoint {path} has entries that cannot be loaded, and keeping a copy of it "
            f"failed ({exc}); refusing to drop them without evidence"
        ) from exc
    return copy


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)
