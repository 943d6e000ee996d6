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

Writes go to temp files `<file>.<random>.tmp`, a fresh name per write, so nothing sitting at a
fixed temp path (a directory, a socket, a stale file) can block writes; left over regular temp
files are removed at start-up, anything else there is left alone with a warning.

What the agent writes when, and the recovery rule that makes it safe (the hooks follow it):
- NodePrepareResources writes the claim's plans before the kubelet gets its answer.
- RunPodSandbox writes nothing before it answers: it pins the pod's netns (a bind mount under
  `<state-dir>/pins/`, `agent.pins`) before moving anything, moves, answers the runtime, and only
  then records the attachments ("attached", with the host state to restore).
- Rule: on start (NRI Synchronize) and before unpreparing a claim, a pin of a prepared plan with
  no recorded attachment is an attach that may have moved an interface before the agent died.
  It is recorded as "attaching" with the pin as its netns, so the ordinary recovery brings the
  interface home through the pin (or finds it was never moved), and a pod still running gets
  it attached again (`Releaser.adopt_unrecorded`, `Attacher.synchronize`). Within one process,
  Stop, Remove and Synchronize first wait for attachments recorded after their answer.
- StopPodSandbox forgets an attachment only once its interface is home.

The file's format, and how loading recovers from a damaged one: `multinet.checkpoint_file`.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from multinet.checkpoint_file import (
    MIGRATIONS,
    VERSION,
    Loaded,
    Quarantined,
    checksum,
    load_state,
    read_checkpoint,
    write_all,
)
from multinet.errors import CheckpointError
from multinet.plans import AgentState, Attachment, AttachPlan

log = logging.getLogger(__name__)

# Loading lives in checkpoint_file; these names stay importable from here, where callers look.
__all__ = [
    "FILENAME",
    "MIGRATIONS",
    "VERSION",
    "Checkpoint",
    "Loaded",
    "Quarantined",
    "load_state",
    "read_checkpoint",
]

FILENAME = "checkpoint.json"


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
        """The prepared plan with this key, if any claim holds it.

        A key starts with its claim's UID (`AttachPlan.key`), and claims are stored by UID, so
        this looks at one claim's plans, not at every plan on the node."""
        claim = self._state.claims.get(key.split("/", 1)[0])
        if claim is None:
            return None
        return next((plan for plan in claim.plans if plan.key == key), None)

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
        doc = {"version": payload["version"], "checksum": checksum(payload)}
        doc.update((k, v) for k, v in payload.items() if k != "version")
        # No indent: json's C encoder serves only unindented output, and this runs right after
        # RunPodSandbox answers, beside the pod's start (50 claims: ~0.3 ms instead of ~2 ms).
        data = json.dumps(doc, ensure_ascii=False).encode()
    except (ValueError, TypeError, RecursionError) as exc:
        # PydanticSerializationError, UnicodeEncodeError (a lone surrogate), too deep
        raise CheckpointError(f"cannot serialise checkpoint {path}: {exc}") from exc
    _write_atomically(path, data)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp: Path | None = None
    try:
        # A fresh name each time: whatever sits at any fixed name cannot block the write.
        fd, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        try:
            write_all(fd, data)
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
