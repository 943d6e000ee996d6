"""The node agent's PodNetwork view at scale: an event judges only its own network, wakes the
publisher only when a network starts or stops binding, and logs only what changed (not every
network's name at every event: N networks arriving cost each node N^2 judgements and log names)."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from multinet.devices import networks
from multinet.kube.podnetworks import PodNetworkWatcher

READY = {
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Checked",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
}


def body(name: str, *, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "provider": "multinet.dev",
            "parameters": {"interfaces": {"names": [f"{name}*"]}},
        },
        "status": READY if ready else {},
    }


def test_each_event_judges_one_network_and_wakes_only_on_a_binding_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = PodNetworkWatcher(mock.MagicMock(), node_name="node-1")
    judged: list[str] = []
    real = networks.judge

    def judge(obj: Any) -> networks.Verdict | None:
        judged.append(networks.name_of(obj))
        return real(obj)

    caplog.set_level("INFO", logger="multinet.kube.podnetworks")
    with mock.patch.object(networks, "judge", judge):
        for i in range(50):
            watcher._apply("ADDED", body(f"n{i:02d}", ready=False))
        assert judged == [f"n{i:02d}" for i in range(50)] and not watcher.changed.is_set()
        assert not caplog.records

        judged.clear()
        watcher._apply("MODIFIED", body("n07"))
        assert judged == ["n07"] and watcher.changed.is_set()
        assert [s.name for s in watcher.selectors] == ["n07"]
        (record,) = caplog.records
        assert "n07" in record.getMessage() and "n08" not in record.getMessage()

        watcher.changed.clear()
        watcher._apply("MODIFIED", body("n07"))  # a status write that keeps it Ready
        watcher._apply("MODIFIED", body("n08", ready=False))
        assert not watcher.changed.is_set() and len(caplog.records) == 1

        watcher._apply("MODIFIED", body("n03"))
        assert [s.name for s in watcher.selectors] == ["n03", "n07"]
        watcher.changed.clear()
        watcher._apply("DELETED", body("n07"))
        assert [s.name for s in watcher.selectors] == ["n03"] and watcher.changed.is_set()
        assert "n07" in caplog.records[-1].getMessage()
