"""The agent's state file: round trip, atomic writes, unreadable files moved aside loudly.

Cases: empty start; round trip of claims and attachments; a process killed mid-write leaves a
loadable file; a failed write changes neither file nor memory; an exception inside update()
discards the draft; garbage / wrong shape / unknown version / JSON nested too deep to parse /
a missing checksum are moved aside with an ERROR log and reported as a lost file; concurrent
writers are serialised.

Recovery: a bad entry (or one that could not be written back) is quarantined (a verbatim copy of
the file kept, key and reason logged and reported) and the rest kept, once; a checksum mismatch
is corruption; the checksum is the documented one; an older version is migrated; a newer one is
refused with the file untouched; two corruptions in one second keep both files; a directory at
the temp path blocks neither start nor writes. The agent posts a Warning Event on its Node for
each entry set aside (and for a lost file), at most 20 and one saying how many more.

Group commit: a burst of N concurrent changes costs far fewer than N file writes (counted at the
real write function, which still writes the real file); every caller returns only once the file
holds its change; a write that fails (a real I/O or serialisation failure) fails every caller
whose change it carried or that was built on top of it, and leaves file and memory as before;
an exception inside one caller's block drops only that change; max_batch=1 writes once per change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from multinet import checkpoint
from multinet.agent.main import report_quarantined
from multinet.checkpoint import Checkpoint, load_state
from multinet.errors import CheckpointError
from multinet.kube.events import EventType, ObjectRef
from multinet.plans import (
    AgentState,
    Attachment,
    AttachPlan,
    ClaimRef,
    HostState,
    PreparedClaim,
    Route,
)


def _claim(i: int) -> PreparedClaim:
    ref = ClaimRef(namespace="ns", name=f"c{i}", uid=f"uid-{i}")
    plan = AttachPlan(
        claim=ref,
        request="net",
        pool="node-a",
        device=f"eth-{i}",
        network="storage",
        mode="host-device",
        host_ifname=f"veth{i}",
        pod_ifname="net1",
        addresses=("10.1.0.5/24",),
        routes=(Route(destination="10.2.0.0/16", gateway="10.1.0.1"),),
        host=HostState(ifname=f"veth{i}", ifindex=7, mtu=1500, mac="02:00:00:00:00:01", up=True),
        reserved_addresses=("10.1.0.5",),
    )
    return PreparedClaim(claim=ref, pod_uids=("pod-1",), plans=(plan,))


async def test_starts_empty_and_round_trips(tmp_path: Path) -> None:
    cp = Checkpoint.open(tmp_path / "state")
    assert cp.state == AgentState()
    async with cp.update() as draft:
        draft.claims["uid-1"] = _claim(1)
        key = draft.claims["uid-1"].plans[0].key
        draft.attachments[key] = Attachment(
            plan_key=key, pod_uid="pod-1", pod="ns/p", netns="/var/run/netns/x", phase="attached"
        )
    again = Checkpoint.open(tmp_path / "state")
    assert again.state == cp.state
    assert again.state.plans_for_pod("pod-1")[0].host_ifname == "veth1"
    assert json.loads(cp.path.read_text())["version"] == 2
    assert not list((tmp_path / "state").glob("*.tmp"))


async def test_exception_inside_update_discards_the_draft(tmp_path: Path) -> None:
    cp = Checkpoint.open(tmp_path)
    async with cp.update() as draft:
        draft.claims["uid-1"] = _claim(1)
    with pytest.raises(RuntimeError):
        async with cp.update() as draft:
            draft.claims["uid-2"] = _claim(2)
            del draft.claims["uid-1"]
            raise RuntimeError("prepare failed half way")
    assert list(cp.state.claims) == ["uid-1"]
    assert list(load_state(cp.path).claims) == ["uid-1"]


def _named(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


@contextlib.contextmanager
def _directory_in_place_of(path: Path) -> Iterator[None]:
    """A directory where the file must go: renaming the new file over it fails, a real I/O
    failure (file permissions would not stop root). The file is put back afterwards."""
    saved = path.with_name("saved")
    path.rename(saved)
    path.mkdir()
    try:
        yield
    finally:
        path.rmdir()
        saved.rename(path)


async def test_failed_write_changes_neither_file_nor_memory(tmp_path: Path) -> None:
    cp = Checkpoint.open(tmp_path)
    async with cp.update() as draft:
        draft.claims["uid-1"] = _claim(1)
    before = cp.path.read_bytes()
    with _directory_in_place_of(cp.path):
        with pytest.raises(CheckpointError, match="cannot write checkpoint"):
            async with cp.update() as draft:
                draft.claims["uid-2"] = _claim(2)
        assert not _named(tmp_path, "*.tmp"), "the failed write left its temp file behind"
    assert cp.path.read_bytes() == before
    assert list(cp.state.claims) == ["uid-1"]


def _writer(state_dir: str) -> None:
    async def run() -> None:
        cp = Checkpoint.open(Path(state_dir))
        i = len(cp.state.claims)
        while True:
            async with cp.update() as draft:
                draft.claims[f"uid-{i}"] = _claim(i)
            i += 1

    asyncio.run(run())


def test_killed_writer_leaves_a_loadable_file(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(7)
    seen = 0
    for _ in range(15):
        proc = ctx.Process(target=_writer, args=(str(tmp_path),))
        proc.start()
        time.sleep(rng.uniform(0.05, 0.25))
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        state = load_state(tmp_path / "checkpoint.json")  # never raises, never moves aside
        assert len(state.claims) >= seen
        seen = len(state.claims)
        assert not list(tmp_path.glob("*.corrupt-*"))
    assert seen > 15, "the writer should have made progress between kills"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "Expecting property name"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"claims": {}}', "unknown checkpoint version None"),
        (b'{"version": 0, "claims": {}}', "unknown checkpoint version 0"),
        (b'{"version": "2", "claims": {}}', "unknown checkpoint version '2'"),
        (b'{"version": 2, "claims": {}}', "no checksum"),
        (b'{"version": 1, "claims": []}', "claims: not a JSON object"),
        (b'{"version": 1, "pods": {}}', "unknown fields pods"),
        # Deeper than the JSON parser's recursion limit: this used to escape as RecursionError
        # and crash-loop the agent.
        (b'{"version": 1, "claims": {"u": ' + b"[" * 100_000, "nested too deeply"),
    ],
)
def test_unreadable_file_is_moved_aside_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, reason: str
) -> None:
    (tmp_path / "checkpoint.json").write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="multinet.checkpoint"):
        cp = Checkpoint.open(tmp_path)
    assert cp.state == AgentState()
    moved = list(tmp_path.glob("checkpoint.json.corrupt-*"))
    assert len(moved) == 1
    assert moved[0].read_bytes() == content
    assert not (tmp_path / "checkpoint.json").exists()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "CHECKPOINT UNREADABLE" in record.getMessage()
    assert reason in record.__dict__["reason"]
    assert record.__dict__["moved_to"] == str(moved[0])
    [lost] = cp.quarantined
    assert (lost.section, lost.key, lost.kept_in) == ("file", "checkpoint.json", moved[0])
    assert reason in lost.reason and str(moved[0]) in lost.describe()


# -- recovery: entries, versions, checksum, names ----------------------------------------------


def _canonical_checksum(doc: dict[str, Any]) -> str:
    """The checksum as the module docstring documents it (independent of its code)."""
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def _v1_file(path: Path, claims: dict[str, Any], attachments: dict[str, Any]) -> bytes:
    """A checkpoint as the previous agent (format version 1, no checksum) wrote it."""
    content = json.dumps({"version": 1, "claims": claims, "attachments": attachments}).encode()
    path.write_bytes(content)
    return content


def _dumped(model: Any) -> Any:
    return json.loads(model.model_dump_json())


async def test_a_bad_entry_is_quarantined_and_the_rest_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = _claim(1)
    bad = _dumped(_claim(2))
    bad["plans"][0]["mode"] = "ipvlan"  # a mode this agent does not know
    content = _v1_file(
        tmp_path / "checkpoint.json",
        {"uid-1": _dumped(good), "uid-2": bad},
        {"key-0": _dumped(_attachment(0)), "key-9": {"plan_key": "key-9"}},
    )
    with caplog.at_level(logging.ERROR, logger="multinet.checkpoint"):
        cp = Checkpoint.open(tmp_path)

    assert cp.state.claims == {"uid-1": good}
    assert cp.state.attachments == {"key-0": _attachment(0)}
    [copy] = _named(tmp_path, "checkpoint.json.quarantine-*")
    assert copy.read_bytes() == content  # the evidence, verbatim
    assert [(q.section, q.key, q.kept_in) for q in cp.quarantined] == [
        ("claims", "uid-2", copy),
        ("attachments", "key-9", copy),
    ]
    assert "plans.0.mode" in cp.quarantined[0].reason
    assert "pod_uid" in cp.quarantined[1].reason
    assert "claim uid-2" in cp.quarantined[0].describe()
    logged = {r.__dict__["key"]: r for r in caplog.records if r.levelno == logging.ERROR}
    assert set(logged) == {"uid-2", "key-9"}
    assert all("QUARANTINED" in r.getMessage() for r in logged.values())
    assert not _named(tmp_path, "*.corrupt-*")

    # The file no longer holds them: the next start quarantines nothing, copies nothing.
    again = Checkpoint.open(tmp_path)
    assert again.state == cp.state and again.quarantined == ()
    assert len(_named(tmp_path, "checkpoint.json.quarantine-*")) == 1


async def test_an_entry_that_cannot_be_written_back_is_quarantined(tmp_path: Path) -> None:
    # Parses and validates, but is nested deeper than the serialiser goes: kept, it would make
    # every later write of the checkpoint fail.
    link: dict[str, Any] = {}
    inner = link
    for _ in range(900):
        inner["n"] = {}
        inner = inner["n"]
    deep = {**_dumped(_attachment(1)), "link": link}
    _v1_file(tmp_path / "checkpoint.json", {}, {"key-0": _dumped(_attachment(0)), "key-1": deep})
    cp = Checkpoint.open(tmp_path)
    [lost] = cp.quarantined
    assert (lost.section, lost.key) == ("attachments", "key-1")
    assert "cannot be written back" in lost.reason
    await cp.record([_attachment(2)])
    assert set(load_state(cp.path).attachments) == {"key-0", "key-2"}


async def test_an_entry_invalid_under_a_valid_checksum_is_quarantined(tmp_path: Path) -> None:
    """E.g. written by an agent whose model accepted it: the bytes are intact, the entry is not
    usable here. Only that entry goes."""
    cp = Checkpoint.open(tmp_path)
    async with cp.update() as draft:
        draft.claims["uid-1"] = _claim(1)
        draft.claims["uid-2"] = _claim(2)
    doc = json.loads(cp.path.read_text())
    del doc["checksum"]
    doc["claims"]["uid-2"]["pod_uids"] = "pod-1"  # not a list
    doc = {"checksum": _canonical_checksum(doc), **doc}
    cp.path.write_text(json.dumps(doc))
    again = Checkpoint.open(tmp_path)
    assert list(again.state.claims) == ["uid-1"]
    assert [(q.section, q.key) for q in again.quarantined] == [("claims", "uid-2")]


async def test_a_checksum_mismatch_is_corruption(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cp = Checkpoint.open(tmp_path)
    async with cp.update() as draft:
        draft.claims["uid-1"] = _claim(1)
    content = cp.path.read_bytes()
    assert content.count(b'"veth1"') == 2
    flipped = content.replace(b'"veth1"', b'"veth7"', 1)  # still valid JSON, still a valid plan
    cp.path.write_bytes(flipped)
    with caplog.at_level(logging.ERROR, logger="multinet.checkpoint"):
        again = Checkpoint.open(tmp_path)
    assert again.state == AgentState()
    [moved] = _named(tmp_path, "checkpoint.json.corrupt-*")
    assert moved.read_bytes() == flipped
    [lost] = again.quarantined
    assert lost.section == "file" and "checksum mismatch" in lost.reason
    assert any("CHECKPOINT UNREADABLE" in r.getMessage() for r in caplog.records)


async def test_the_file_carries_the_documented_checksum(tmp_path: Path) -> None:
    cp = Checkpoint.open(tmp_path)
    await cp.record([_attachment(1, pod="ns/p\u00e9\u2603")])
    doc = json.loads(cp.path.read_text())
    recorded = doc.pop("checksum")
    assert recorded == _canonical_checksum(doc)


async def test_an_older_version_is_migrated_and_rewritten_in_the_current_format(
    tmp_path: Path,
) -> None:
    _v1_file(tmp_path / "checkpoint.json", {"uid-1": _dumped(_claim(1))}, {})
    cp = Checkpoint.open(tmp_path)
    assert cp.state.claims == {"uid-1": _claim(1)}
    assert cp.quarantined == ()
    assert not _named(tmp_path, "checkpoint.json.*-*")  # nothing moved or copied
    await cp.record([_attachment(1)])
    doc = json.loads(cp.path.read_text())
    assert doc["version"] == 2 and doc.pop("checksum") == _canonical_checksum(doc)
    assert set(Checkpoint.open(tmp_path).state.claims) == {"uid-1"}


def test_a_file_from_a_newer_agent_is_refused_and_left_untouched(tmp_path: Path) -> None:
    content = b'{"version": 3, "checksum": "sha256:00", "claims": {"u": {"shape": "new"}}}'
    (tmp_path / "checkpoint.json").write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        Checkpoint.open(tmp_path)
    message = str(err.value)
    assert "newer node agent" in message and "version 3" in message
    assert "roll the node agent forward" in message
    assert (tmp_path / "checkpoint.json").read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json"]


def test_two_corruptions_in_the_same_second_are_both_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = time.gmtime(1_700_000_000)
    monkeypatch.setattr(time, "gmtime", lambda *_: frozen)
    for content in (b"{first", b"{second"):
        (tmp_path / "checkpoint.json").write_bytes(content)
        Checkpoint.open(tmp_path)
    moved = sorted(p.read_bytes() for p in tmp_path.glob("checkpoint.json.corrupt-*"))
    assert moved == [b"{first", b"{second"]


async def test_a_directory_at_the_temp_path_does_not_block_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "checkpoint.json.tmp").mkdir()  # e.g. left by a hostPath mount gone wrong
    (tmp_path / "checkpoint.json.0a1b.tmp").write_bytes(b"half a write")  # cut short by a crash
    with caplog.at_level(logging.WARNING, logger="multinet.checkpoint"):
        cp = Checkpoint.open(tmp_path)
    assert any("not a regular file" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "checkpoint.json.0a1b.tmp").exists()
    await cp.record([_attachment(1)])
    assert set(load_state(cp.path).attachments) == {"key-1"}
    assert (tmp_path / "checkpoint.json.tmp").is_dir()  # not ours to delete


async def test_concurrent_updates_are_serialised(tmp_path: Path) -> None:
    cp = Checkpoint.open(tmp_path)

    async def add(i: int) -> None:
        async with cp.update() as draft:
            await asyncio.sleep(0)  # yield inside the critical section
            draft.claims[f"uid-{i}"] = _claim(i)

    await asyncio.gather(*(add(i) for i in range(30)))
    assert len(cp.state.claims) == 30
    assert len(load_state(cp.path).claims) == 30


async def test_serves_the_attach_side_state_store(tmp_path: Path) -> None:
    cp = Checkpoint.open(tmp_path)
    async with cp.update() as draft:
        draft.claims["uid-1"] = _claim(1)
        draft.claims["uid-2"] = _claim(2)
    key = cp.state.claims["uid-1"].plans[0].key
    assert cp.plan(key) == cp.state.claims["uid-1"].plans[0]
    other = cp.state.claims["uid-2"].plans[0]
    assert cp.plan(other.key) == other
    assert cp.plan("nope") is None
    assert cp.plan(key + "-other-device") is None  # the claim exists, the plan does not
    att = Attachment(plan_key=key, pod_uid="pod-1", pod="ns/p", netns="/x", phase="attaching")
    await cp.record([att])
    assert load_state(cp.path).attachments == {key: att}
    await cp.forget([key, "unknown"])
    assert load_state(cp.path).attachments == {}


# -- group commit ------------------------------------------------------------------------------


class _HeldWrites:
    """Wraps the real write function: counts the writes and can hold the first one in its worker
    thread until released, so the test knows which changes arrive while a write is in flight."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold_first: bool) -> None:
        self.count = 0
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()
        real: Callable[[Path, bytes], None] = checkpoint._write_atomically

        def write(path: Path, data: bytes) -> None:
            self.count += 1
            self.started.set()
            if self.count == 1:
                assert self.release.wait(30), "test never released the first write"
            real(path, data)

        monkeypatch.setattr(checkpoint, "_write_atomically", write)


async def _until(predicate: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {within}s waiting for {what}"
        await asyncio.sleep(0.005)


def _attachment(i: int, pod: str | None = None) -> Attachment:
    return Attachment(
        plan_key=f"key-{i}", pod_uid=f"pod-{i}", pod=pod or f"ns/p{i}", netns="/x", phase="attached"
    )


async def test_a_burst_of_changes_shares_few_writes_and_each_returns_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _HeldWrites(monkeypatch, hold_first=False)
    cp = Checkpoint.open(tmp_path)
    seen_on_return: dict[int, bool] = {}

    async def record(i: int) -> None:
        await cp.record([_attachment(i)])
        seen_on_return[i] = f"key-{i}" in load_state(cp.path).attachments
        assert f"key-{i}" in cp.state.attachments

    n = 50
    await asyncio.gather(*(record(i) for i in range(n)))
    assert seen_on_return == {i: True for i in range(n)}
    assert set(load_state(cp.path).attachments) == {f"key-{i}" for i in range(n)}
    assert writes.count == cp.writes
    assert 1 <= writes.count <= n // 10, f"{writes.count} writes for {n} changes"


async def test_changes_made_during_a_write_go_together_in_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _HeldWrites(monkeypatch, hold_first=True)
    cp = Checkpoint.open(tmp_path)
    returned: list[int] = []
    in_file_on_return: dict[int, set[str]] = {}

    async def record(i: int) -> None:
        await cp.record([_attachment(i)])
        in_file_on_return[i] = set(load_state(cp.path).attachments)
        returned.append(i)

    first = asyncio.create_task(record(0))
    await _until(writes.started.is_set, "the first write to start")
    rest = [asyncio.create_task(record(i)) for i in range(1, 30)]
    await _until(lambda: len(cp._queue) == 29, "29 changes queued behind the held write")
    await asyncio.sleep(0.05)
    assert returned == [], "nobody may return before a write holding its change is durable"
    assert cp.state.attachments == {}

    writes.release.set()
    await asyncio.gather(first, *rest)
    assert writes.count == 2
    assert returned[0] == 0
    assert in_file_on_return[0] >= {"key-0"}
    for i in range(1, 30):
        assert in_file_on_return[i] == {f"key-{j}" for j in range(30)}


async def test_a_failed_write_fails_its_whole_batch_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = Checkpoint.open(tmp_path)
    await cp.record([_attachment(0)])
    writes = _HeldWrites(monkeypatch, hold_first=True)
    first = asyncio.create_task(cp.record([_attachment(1)]))
    await _until(writes.started.is_set, "the first write to start")
    # One change of the next batch cannot be encoded (a lone surrogate is not UTF-8): a real
    # serialisation failure that takes the innocent changes written with it down too.
    batch = [
        asyncio.create_task(cp.record([_attachment(i, pod="ns/\ud800" if i == 5 else None)]))
        for i in range(2, 10)
    ]
    await _until(lambda: len(cp._queue) == 8, "8 changes queued behind the held write")
    writes.release.set()
    await first
    before_bytes = cp.path.read_bytes()
    before_state = cp.state
    results = await asyncio.gather(*batch, return_exceptions=True)
    for result in results:
        assert isinstance(result, CheckpointError), result
        assert "cannot serialise checkpoint" in str(result)
    assert (writes.count, cp.writes) == (1, 3)  # setup, held write, batch failed before the disk
    assert cp.path.read_bytes() == before_bytes
    assert cp.state == before_state
    assert set(cp.state.attachments) == {"key-0", "key-1"}
    await cp.record([_attachment(10)])  # the next change starts from the state on disk
    assert set(load_state(cp.path).attachments) == {"key-0", "key-1", "key-10"}


async def test_changes_built_on_a_failed_write_fail_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = Checkpoint.open(tmp_path)
    await cp.record([_attachment(0)])
    before_bytes = cp.path.read_bytes()
    before_state = cp.state
    blocked = _directory_in_place_of(cp.path)
    blocked.__enter__()  # the held write cannot rename over it: a real I/O failure
    writes = _HeldWrites(monkeypatch, hold_first=True)
    doomed = asyncio.create_task(cp.record([_attachment(1)]))
    await _until(writes.started.is_set, "the first write to start")
    queued = [asyncio.create_task(cp.record([_attachment(i)])) for i in range(2, 6)]
    await _until(lambda: len(cp._queue) == 4, "4 changes queued behind the held write")
    mid_block = asyncio.Event()
    finish_block = asyncio.Event()

    async def slow_update() -> None:
        async with cp.update() as draft:  # its draft already holds changes 1..5
            mid_block.set()
            await finish_block.wait()
            draft.attachments["key-6"] = _attachment(6)

    slow = asyncio.create_task(slow_update())
    await mid_block.wait()
    writes.release.set()
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        await doomed
    for task in queued:
        with pytest.raises(CheckpointError, match="cannot write checkpoint"):
            await task
    finish_block.set()
    with pytest.raises(CheckpointError, match="a write failed while this change was being made"):
        await slow
    blocked.__exit__(None, None, None)
    assert writes.count == 1
    assert cp.path.read_bytes() == before_bytes
    assert cp.state == before_state
    await cp.record([_attachment(7)])
    assert set(load_state(cp.path).attachments) == {"key-0", "key-7"}


async def test_an_exception_in_one_block_drops_only_that_change(tmp_path: Path) -> None:
    cp = Checkpoint.open(tmp_path)

    async def change(i: int) -> None:
        async with cp.update() as draft:
            draft.attachments[f"key-{i}"] = _attachment(i)
            if i == 3:
                raise RuntimeError("attach failed half way")

    results = await asyncio.gather(*(change(i) for i in range(6)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["RuntimeError"] + [
        "NoneType"
    ] * 2
    assert set(load_state(cp.path).attachments) == {f"key-{i}" for i in (0, 1, 2, 4, 5)}


async def test_max_batch_one_writes_once_per_change(tmp_path: Path) -> None:
    cp = Checkpoint.open(tmp_path, max_batch=1)
    await asyncio.gather(*(cp.record([_attachment(i)]) for i in range(10)))
    assert cp.writes == 10
    assert len(load_state(cp.path).attachments) == 10


# -- what the agent tells the cluster ----------------------------------------------------------


@dataclass
class _PostedEvents:
    """An EventSink that keeps what was posted."""

    posted: list[tuple[ObjectRef, str, str, str]] = field(default_factory=list)

    def post(self, about: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        self.posted.append((about, type_, reason, message))


def test_the_agent_reports_each_quarantined_entry_on_its_node(tmp_path: Path) -> None:
    bad = _dumped(_claim(2))
    bad["plans"][0]["mode"] = "ipvlan"
    _v1_file(tmp_path / "checkpoint.json", {"uid-1": _dumped(_claim(1)), "uid-2": bad}, {})
    cp = Checkpoint.open(tmp_path)
    sink = _PostedEvents()
    report_quarantined(sink, cp.quarantined, "node-a")
    [(about, type_, reason, message)] = sink.posted
    assert (about.kind, about.name, about.namespace, about.uid) == (
        "Node",
        "node-a",
        None,
        "node-a",
    )
    assert (type_, reason) == ("Warning", "CheckpointEntryQuarantined")
    assert "claim uid-2" in message and "plans.0.mode" in message
    assert str(cp.quarantined[0].kept_in) in message


def test_the_agent_reports_a_lost_file_and_caps_a_flood(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.json").write_bytes(b"{garbage")
    sink = _PostedEvents()
    report_quarantined(sink, Checkpoint.open(tmp_path).quarantined, "node-a")
    [(_, _, reason, message)] = sink.posted
    assert reason == "CheckpointUnreadable" and "empty state" in message

    bad = {f"key-{i}": {"plan_key": f"key-{i}"} for i in range(25)}
    _v1_file(tmp_path / "checkpoint.json", {}, bad)
    sink = _PostedEvents()
    report_quarantined(sink, Checkpoint.open(tmp_path).quarantined, "node-a")
    assert len(sink.posted) == 21
    assert "and 5 more" in sink.posted[-1][3]
