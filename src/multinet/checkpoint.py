"""Adapter: the node agent's state file (one per node), written atomically.

Write protocol: serialise to `<file>.tmp`, fsync it, rename over the file, fsync the directory,
so a crash leaves either the old or the new content, never a torn file. Writes run in a worker
thread (fsync can take milliseconds) and an asyncio lock serialises writers.

Mutations go through `update()`: callers change a draft (a shallow copy; the values are frozen
models) and the draft becomes the current state only once it is on disk. A failed write leaves
both the file and the in-memory state as they were, so nothing is ever acknowledged that a
restart would forget.

A file that cannot be read (bad JSON, wrong shape, unknown version) is moved aside as
`<file>.corrupt-<UTC timestamp>` with an ERROR log, and the agent starts from an empty state:
the evidence is kept for a human, nothing is silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import ValidationError

from multinet.errors import CheckpointError
from multinet.plans import AgentState, Attachment, AttachPlan

log = logging.getLogger(__name__)

FILENAME = "checkpoint.json"


class Checkpoint:
    """The current `AgentState` and its file. Create with `Checkpoint.open(state_dir)`."""

    def __init__(self, path: Path, state: AgentState) -> None:
        self.path = path
        self._state = state
        self._lock = asyncio.Lock()

    @classmethod
    def open(cls, state_dir: Path, filename: str = FILENAME) -> Checkpoint:
        """Loads the state (blocking; call at start-up). Creates `state_dir` if needed."""
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"cannot create state directory {state_dir}: {exc}") from exc
        path = state_dir / filename
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # a write cut short by a crash
        return cls(path, load_state(path))

    @property
    def state(self) -> AgentState:
        """The state as last written. Read-only by convention: change it through `update()`."""
        return self._state

    @asynccontextmanager
    async def update(self) -> AsyncIterator[AgentState]:
        """`async with cp.update() as draft:` change `draft.claims` / `draft.attachments`;
        on exit the draft is written and becomes the state. An exception inside the block
        discards the draft; a failed write raises CheckpointError and discards it too."""
        async with self._lock:
            draft = self._state.model_copy(
                update={
                    "claims": dict(self._state.claims),
                    "attachments": dict(self._state.attachments),
                }
            )
            yield draft
            data = draft.model_dump_json(indent=1).encode()
            await asyncio.to_thread(_write_atomically, self.path, data)
            self._state = draft

    # -- the attach side's StateStore (multinet.agent.ports) ------------------------------

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
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        log.info("no checkpoint yet, starting empty", extra={"path": str(path)})
        return AgentState()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        version = doc.get("version")
        if version != AgentState().version:
            raise ValueError(f"unknown checkpoint version {version!r}")
        return AgentState.model_validate(doc)
    except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
        aside = path.with_name(
            f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        )
        try:
            path.rename(aside)
        except OSError as move_exc:
            raise CheckpointError(
                f"checkpoint {path} is unreadable ({exc}) and could not be moved aside: {move_exc}"
            ) from exc
        log.error(
            "CHECKPOINT UNREADABLE: moved aside, starting with an empty state; prepared claims "
            "and attachments it held are forgotten and need manual inspection",
            extra={"path": str(path), "moved_to": str(aside), "reason": str(exc)},
        )
        return AgentState()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {exc}") from exc
