"""Decoding API documents of any depth (multinet.api.documents).

Cases: ordinary JSON decodes as json.loads does; a document nested far deeper than the decoder
follows decodes with the deep subtree replaced by the marker, its siblings intact; brackets and
quotes inside strings do not count as nesting; text that is not JSON is still a ValueError.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multinet.api import documents

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_ordinary_json_decodes_unchanged(value: Any) -> None:
    text = json.dumps(value)
    assert documents.loads(text) == value
    assert json.loads(documents.cut_deep(text, 64)) == value


def test_a_deep_subtree_is_cut_and_its_siblings_kept() -> None:
    depth = 20_000
    text = '{"keep": "[{\\"", "deep": ' + "[" * depth + "]" * depth + ', "after": 1}'
    with pytest.raises(RecursionError):
        json.loads(text)
    doc = documents.loads(text.encode())
    assert doc["keep"] == '[{"' and doc["after"] == 1
    value = doc["deep"]
    for _ in range(documents.MAX_DEPTH - 1):
        (value,) = value
    assert value == documents.TOO_DEEP


def test_text_that_is_not_json_stays_an_error() -> None:
    with pytest.raises(ValueError):
        documents.loads("[" * 5000 + "x")
