"""Log records carry our context (`extra=`) as key=value / JSON fields, and nothing bulky.

Cases: simple values appear in text and JSON; objects a library attaches (kopf puts its whole
settings object in `extra`) are left out; lists of names survive.
"""

from __future__ import annotations

import json
import logging

from multinet.logs import JsonFormatter, TextFormatter


class _Bulky:
    def __repr__(self) -> str:
        return "Bulky(" + "x" * 500 + ")"


def _record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"msg": "attached %d", "args": (1,), "levelname": "INFO"})
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_text_shows_simple_context_and_drops_objects() -> None:
    line = TextFormatter("%(message)s").format(
        _record(pod="ns/app", devices=["eth1"], settings=_Bulky())
    )
    assert line == "attached 1 pod=ns/app devices=['eth1']"


def test_json_has_simple_context_and_drops_objects() -> None:
    doc = json.loads(JsonFormatter().format(_record(podUID="u-1", settings=_Bulky())))
    assert doc["msg"] == "attached 1"
    assert doc["podUID"] == "u-1"
    assert "settings" not in doc
