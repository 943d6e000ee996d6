"""Pure: decode API documents that users wrote, however deeply they nest.

The apiserver stores JSON nested far deeper than Python's decoder follows (an opaque claim config
or a PodNetwork's free-form `parameters` can nest thousands of levels), and `json.loads` then
raises RecursionError, which no caller expects. `loads` decodes such a document with every
subtree below `max_depth` replaced by the string `TOO_DEEP`, so the document still decodes and
the validation of the field that held the subtree names it ("must be a string, got
'<nested too deeply>'") instead of the agent crashing or dropping every other object of a list.
"""

from __future__ import annotations

import json
from typing import Any

TOO_DEEP = "<nested too deeply>"
#: No multinet field nests more than a handful of levels; Kubernetes metadata a few more.
MAX_DEPTH = 64


def loads(raw: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, but a document nested deeper than the decoder follows comes back with its
    deep subtrees cut (see the module docstring). Raises ValueError for text that is not JSON."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except RecursionError:
        return json.loads(cut_deep(text, max_depth))


def cut_deep(text: str, max_depth: int) -> str:
    """The JSON text with every array or object that opens below `max_depth` replaced by the
    JSON string `TOO_DEEP`. Text that is not JSON stays not JSON (the decoder reports it)."""
    out: list[str] = []
    depth = 0
    copied = 0  # text[copied:i] is still to be copied
    cutting = False  # inside a subtree that opened below max_depth: copy nothing
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _string_end(text, i)
            continue
        if c in "[{":
            depth += 1
            if depth == max_depth + 1 and not cutting:
                out += [text[copied:i], json.dumps(TOO_DEEP)]
                cutting = True
        elif c in "]}":
            if depth == max_depth + 1 and cutting:
                copied, cutting = i + 1, False
            depth -= 1
        i += 1
    if not cutting:
        out.append(text[copied:])
    return "".join(out)


def _string_end(text: str, i: int) -> int:
    """Index after the JSON string that starts at text[i] (a quote)."""
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        else:
            i += 1
    return n
