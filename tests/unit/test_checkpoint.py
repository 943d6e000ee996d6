"""The agent's state file: round trip, atomic writes, unreadable files moved aside loudly.

Cases: empty start; round trip of claims and attachments; a process killed mid-write leaves a
loadable file; a failed write changes neither file nor memory; an exception inside update()
discards the draft; garbage / wrong shape / unknown version are moved aside with an ERROR log;
concurrent writers are serialised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from multinet.checkpoint import Checkpoint, load_state
from multinet.errors import CheckpointError
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
    assert json.loads(cp.path.read_text())["version"] == 1
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


async def test_failed_write_changes_neither_file_nor_memory(tmp_path: Path) -> None:
    cp = Checkpoint.open(tmp_path)
    async with cp.update() as draft:
        draft.claims["uid-1"] = _claim(1)
    before = cp.path.read_bytes()
    tmp = cp.path.with_name(cp.path.name + ".tmp")
    tmp.mkdir()  # the temp file cannot be created: a real I/O failure, caused for real
    try:
        with pytest.raises(CheckpointError, match="cannot write checkpoint"):
            async with cp.update() as draft:
                draft.claims["uid-2"] = _claim(2)
    finally:
        tmp.rmdir()
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
        (b'{"version": 2, "claims": {}}', "unknown checkpoint version 2"),
        (b'{"claims": {}}', "unknown checkpoint version None"),
        (b'{"version": 1, "claims": {"u": {"claim": 5}}}', "validation error"),
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
    key = cp.state.claims["uid-1"].plans[0].key
    assert cp.plan(key) == cp.state.claims["uid-1"].plans[0]
    assert cp.plan("nope") is None
    att = Attachment(plan_key=key, pod_uid="pod-1", pod="ns/p", netns="/x", phase="attaching")
    await cp.record([att])
    assert load_state(cp.path).attachments == {key: att}
    await cp.forget([key, "unknown"])
    assert load_state(cp.path).attachments == {}
