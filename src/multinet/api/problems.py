"""One translation of pydantic validation errors into multinet's "field.path: rule" messages.

Every rejection a user sees names the field path and the rule, e.g.
``parameters.mtu: must be between 68 and 65535, got 20``. Pydantic's own wording ("Input should be
a valid integer") is replaced here, once, so the models only say *what* the rule is.

Field validators raise ``ValueError("rule")``; the message becomes ``<path>: rule``. A validator
that wants to point below its own field raises ``problem(subpath, rule)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from multinet.errors import ConfigError

__all__ = ["ConfigError", "fail", "join_path", "messages", "problem", "show"]

_SUBPATH = "subpath"


def problem(subpath: Sequence[str | int], rule: str) -> PydanticCustomError:
    """An error for a field below the one being validated (``subpath`` relative to it)."""
    return PydanticCustomError("multinet", "{rule}", {"rule": rule, _SUBPATH: list(subpath)})


_SHOWN = 80  # characters of a value a message quotes


def show(value: Any) -> str:
    """A value as the user wrote it in YAML/JSON, short enough for a message.

    Never raises: it renders the JSON lazily and stops after ``_SHOWN`` characters, so a document
    nested thousands of levels deep (``json.dumps`` would hit the recursion limit) or holding
    millions of items costs no more than a short one. Each nesting level emits a character before
    descending, so the walk never goes deeper than ``_SHOWN`` levels.
    """
    text = ""
    try:
        for piece in _pieces(value):
            text += piece
            if len(text) > _SHOWN:
                break
    except Exception:  # a hostile __str__ or key; the message must still be built
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _pieces(value: Any) -> Iterator[str]:
    """``json.dumps(value, sort_keys=True, default=str)`` in pieces, produced on demand."""
    if isinstance(value, Mapping):
        yield "{"
        for i, key in enumerate(sorted(value, key=str)):
            yield (", " if i else "") + _scalar(key if isinstance(key, str) else str(key)) + ": "
            yield from _pieces(value[key])
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ", "
            yield from _pieces(item)
        yield "]"
    else:
        yield _scalar(value)


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, str | int | float):
        try:
            return json.dumps(value)
        except ValueError:  # an int beyond Python's 4300-digit str() limit
            return f"<{type(value).__name__}>"
    return json.dumps(str(value))


def join_path(parts: Iterable[str | int]) -> str:
    """``("routes", 1, "gateway")`` -> ``routes[1].gateway``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "float_type": "a number",
}


_FIXED = {"missing": "is required", "extra_forbidden": "unknown field"}
_BOUNDS = {
    "greater_than_equal": ">=",
    "less_than_equal": "<=",
    "greater_than": ">",
    "less_than": "<",
}


def _rule(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = show(err.get("input"))
    if kind in _FIXED:
        return _FIXED[kind]
    if kind in _TYPE_NAMES:
        return f"must be {_TYPE_NAMES[kind]}, got {got}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got {got}"
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {next(iter(ctx.values()))}, got {got}"
    if kind == "multinet":
        return str(ctx["rule"])
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    sized = _size_rule(kind, ctx, got)
    if sized is not None:
        return sized
    return f"{err['msg'][:1].lower()}{err['msg'][1:]}"


def _size_rule(kind: str, ctx: dict[str, Any], got: str) -> str | None:
    """Rules on the length of a list or a string, and on a string's pattern."""
    if kind == "too_short":
        n = ctx.get("min_length")
        return f"must have at least {n} item{'s' if n != 1 else ''}"
    if kind == "too_long":
        n = ctx.get("max_length")
        return f"must have at most {n} item{'s' if n != 1 else ''}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters, got {got}"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}, got {got}"
    return None


def messages(exc: ValidationError, prefix: str) -> list[str]:
    """Every error of ``exc`` as ``prefix.path: rule``, in pydantic's (document) order."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        loc: list[str | int] = [prefix] if prefix else []
        loc.extend(p for p in err["loc"] if not _is_union_tag(p))
        ctx = err.get("ctx") or {}
        loc.extend(ctx.get(_SUBPATH, []))
        out.append(f"{join_path(loc)}: {_rule(err)}")
    return out


def _is_union_tag(part: str | int) -> bool:
    # pydantic puts the chosen union member ("list[str]", "function-after[...]") into loc
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "bool"))


def fail(problems: list[str], *, subject: str = "") -> NoReturn:
    raise ConfigError(problems, subject=subject)
