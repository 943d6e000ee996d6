"""Adapter: the node agent's state file (one per node), written atomically, with group commit.

Write protocol: serialise the whole `AgentState` to `<file>.tmp`, fsync it, rename over the
file, fsync the directory, so a crash leaves either the old or the new content, never a torn
file. Serialising and writing run in a worker thread (two fsyncs take milliseconds).

Mutations go through `update()` (and `record()` / `forget()`, which use it): the caller changes
a draft (a shallow copy; the values are frozen models) and the draft becomes `state` only once
it is on disk.

Why group commit: one write costs ~16 ms (p50; ~36 ms p90 at 63 KB under load), so writing once
per change makes a burst of N prepares and NRI hooks wait up to N writes in one queue. Instead,
changes are applied to the draft one after another (in arrival order, serialised by a lock that
covers only the caller's block, not the write), and a single writer task persists the newest
draft: every change applied while a write is in flight is carried together by the ONE next
write. A burst of N changes therefore costs about two writes instead of N.

The exact guarantee:
- `update()` returns only once a write containing the caller's change (and every change applied
  before it) is durable; `state` then includes it. Nothing is acknowledged that a restart would
  forget.
- Changes are applied in order, each on top of all earlier ones; a write never contains a change
  without all the changes applied before it.
- A failed write (I/O error, or a state that cannot be serialised) raises CheckpointError in
  every caller whose change it carried, and also in every caller whose change was applied while
  it was in flight, since those drafts were built on top of the failed changes. The file and
  `state` stay as they were before all these changes, and the next `update()` starts from that
  state again.
- An exception inside the caller's block discards only that caller's change.
- A caller cancelled while waiting for its write does not take its change back: it is already
  part of the draft the later changes build on, so it is written (or fails) with its batch.

File format (version 2): the `AgentState` as a JSON object plus `"checksum": "sha256:<hex>"`,
the SHA-256 of the canonical payload: every top-level field except `checksum`, dumped with
`json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, UTF-8 (lone
surrogates passed through). Temp files are `<file>.<random>.tmp`, a fresh name per write, so
nothing sitting at a fixed temp path (a directory, a socket, a stale file) can block writes; left
over regular temp files are removed at start-up, anything else there is left alone with a warning.

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

import asyncio
import contextlib
import glob
import hashlib
import json
import logging
import os
import secrets
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from multinet.errors import CheckpointError
from multinet.plans import AgentState, Attachment, AttachPlan, PreparedClaim

log = logging.getLogger(__name__)

FILENAME = "checkpoint.json"
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


@dataclass
class _Change:
    """One caller's applied change: the draft after it, and the caller waiting for its write."""

    draft: AgentState
    durable: asyncio.Future[None]


class Checkpoint:
    """The current `AgentState` and its file. Create with `Checkpoint.open(state_dir)`.

    `max_batch` caps how many callers' changes one write may carry (0: no cap); 1 gives one
    write per change, the behaviour before group commit, for comparisons.
    """

    def __init__(self, path: Path, state: AgentState, *, max_batch: int = 0) -> None:
        self.path = path
        self.max_batch = max_batch
        self.writes = 0  # file writes done, successful or not (benchmarks, tests)
        self._state = state  # what is on disk
        self._head = state  # on disk + every applied change still waiting for its write
        self._edit = asyncio.Lock()  # serialises the callers' blocks, never held during a write
        self._queue: list[_Change] = []  # applied, not yet taken by a write, in order
        self._writer: asyncio.Task[None] | None = None
        # Set by open(): what loading set aside, for the agent to report (Events).
        self.quarantined: tuple[Quarantined, ...] = ()

    @classmethod
    def open(cls, state_dir: Path, filename: str = FILENAME, *, max_batch: int = 0) -> Checkpoint:
        """Loads the state (blocking; call at start-up). Creates `state_dir` if needed.

        Raises CheckpointError when the agent must not start: the file is unreachable, written by
        a newer agent, or entries were quarantined and the cleaned state cannot be written."""
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"cannot create state directory {state_dir}: {exc}") from exc
        path = state_dir / filename
        _remove_stale_temp_files(path)
        loaded = read_checkpoint(path)
        if any(q.section != "file" for q in loaded.quarantined):
            # Drop the bad entries from the file now: the next start must not quarantine again.
            _serialise_and_write(path, loaded.state)
        checkpoint = cls(path, loaded.state, max_batch=max_batch)
        checkpoint.quarantined = loaded.quarantined
        return checkpoint

    @property
    def state(self) -> AgentState:
        """The state as last written. Read-only by convention: change it through `update()`."""
        return self._state

    @asynccontextmanager
    async def update(self) -> AsyncIterator[AgentState]:
        """`async with cp.update() as draft:` change `draft.claims` / `draft.attachments`;
        on exit the draft is queued for the next write and the caller waits until that write is
        durable, then the draft is part of `state`. An exception inside the block discards the
        draft; a failed write raises CheckpointError (see the module docstring for which callers
        fail with it)."""
        async with self._edit:
            base = self._head
            draft = base.model_copy(
                update={"claims": dict(base.claims), "attachments": dict(base.attachments)}
            )
            yield draft
            if self._head is not base:
                # Only a failed write moves the head under our feet: back to the state on disk.
                raise CheckpointError(
                    f"checkpoint {self.path} not written: a write failed while this change was "
                    "being made on top of it; retry"
                )
            change = _Change(draft, asyncio.get_running_loop().create_future())
            self._head = draft
            self._queue.append(change)
            if self._writer is None:
                self._writer = asyncio.create_task(self._write_queued(), name="checkpoint-writer")
        await change.durable

    async def _write_queued(self) -> None:
        """The one writer: persists the newest queued draft until the queue is empty."""
        batch: list[_Change] = []
        try:
            while self._queue:
                take = self.max_batch or len(self._queue)
                batch, self._queue = self._queue[:take], self._queue[take:]
                target = batch[-1].draft  # includes every earlier change in the batch
                self.writes += 1
                try:
                    await asyncio.to_thread(_serialise_and_write, self.path, target)
                except CheckpointError as exc:
                    failed, self._queue = batch + self._queue, []
                    self._head = self._state
                    log.error(
                        "checkpoint write failed; its changes and those made on top are dropped",
                        extra={"path": str(self.path), "changes": len(failed), "error": str(exc)},
                    )
                    _settle(failed, exc)
                    continue
                self._state = target
                _settle(batch, None)
        except BaseException:
            # Cancelled (shutdown) mid-write: whether the file changed is unknown, so nobody
            # waiting is told yes, and later changes start again from the state known on disk.
            failed, self._queue = batch + self._queue, []
            self._head = self._state
            _settle(failed, CheckpointError(f"checkpoint {self.path}: writer stopped"))
            raise
        finally:
            self._writer = None

    # -- the attach side's StateStore (multinet.agent.contracts) ------------------------------

    def plan(self, key: str) -> AttachPlan | None:
        """The prepared plan with this key, if any claim holds it."""
        for claim in self._state.claims.values():
            for plan in claim.plans:
                if plan.key == key:
                    return plan
        return None

    async def record(self, attachments: Iterable[Attachment]) -> None:
        """Set these attachments (by plan key) and persist before returning."""
        async with self.update() as draft:
            for attachment in attachments:
                draft.attachments[attachment.plan_key] = attachment

    async def forget(self, keys: Iterable[str]) -> None:
        """Drop these attachments and persist before returning."""
        async with self.update() as draft:
            for key in keys:
                draft.attachments.pop(key, None)


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
        _verify_checksum(doc)
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


def _verify_checksum(doc: dict[str, Any]) -> None:
    """Removes the recorded checksum from `doc` and checks it against the rest."""
    recorded = doc.pop("checksum", None)
    if not isinstance(recorded, str):
        raise _Unusable("no checksum")
    actual = _checksum(doc)
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


def _checksum(doc: Mapping[str, Any]) -> str:
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
            _write_all(fd, raw)
        finally:
            os.close(fd)
    except OSError as exc:
        raise CheckpointError(
            f"checkpoint {path} has entries that cannot be loaded, and keeping a copy of it "
            f"failed ({exc}); refusing to drop them without evidence"
        ) from exc
    return copy


def _remove_stale_temp_files(path: Path) -> None:
    """Temp files of writes cut short by a crash; anything but a regular file is left alone."""
    legacy = path.with_name(path.name + ".tmp")  # the fixed temp name of earlier versions
    for tmp in [legacy, *path.parent.glob(f"{glob.escape(path.name)}.*.tmp")]:
        try:
            mode = tmp.lstat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot inspect %s: %s", tmp, exc)
            continue
        if not stat.S_ISREG(mode):
            log.warning(
                "%s is not a regular file; left alone (writes use fresh temp names)",
                tmp,
                extra={"path": str(tmp)},
            )
            continue
        try:
            tmp.unlink()
        except OSError as exc:
            log.warning("cannot remove stale temp file %s: %s", tmp, exc)


def _settle(changes: list[_Change], error: CheckpointError | None) -> None:
    """Wakes the callers of these changes (a cancelled caller's future is already done)."""
    for change in changes:
        if change.durable.done():
            continue
        if error is None:
            change.durable.set_result(None)
        else:
            mine = CheckpointError(str(error))  # one exception object per caller's traceback
            mine.__cause__ = error
            change.durable.set_exception(mine)


def _serialise_and_write(path: Path, state: AgentState) -> None:
    """Runs in a worker thread: `state` is never mutated once queued (later drafts are copies)."""
    try:
        payload = state.model_dump(mode="json")  # version, claims, attachments
        doc = {"version": payload["version"], "checksum": _checksum(payload)}
        doc.update((k, v) for k, v in payload.items() if k != "version")
        data = json.dumps(doc, indent=1, ensure_ascii=False).encode()
    except (ValueError, TypeError, RecursionError) as exc:
        # PydanticSerializationError, UnicodeEncodeError (a lone surrogate), too deep
        raise CheckpointError(f"cannot serialise checkpoint {path}: {exc}") from exc
    _write_atomically(path, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp: Path | None = None
    try:
        # A fresh name each time: whatever sits at any fixed name cannot block the write.
        fd, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        tmp = None
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {exc}") from exc
