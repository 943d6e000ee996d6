"""Lazy package initialisers for ``kubernetes_asyncio``: ~33 MB of RSS neither program needs.

Why: ``kubernetes_asyncio/__init__.py`` imports ``client``, ``config``, ``dynamic``, ``stream``,
``utils`` and ``watch``; ``client/__init__.py`` then imports every API class (65 modules) and
every model (767 modules); ``client/models/__init__.py`` and ``client/api/__init__.py`` again.
That is ~860 modules and 33 MB of RSS in both programs (``bench/agent_memory.py``), for the three
API classes, ``ApiClient``, ``Configuration`` and the handful of models the product touches.

What: for those four package ``__init__`` files only, a meta path finder compiles the library's
own source with every ``from <package>.<sub> import Name`` / ``import <package>.<sub> as name``
line turned into an entry of a PEP 562 module ``__getattr__``. The first access to a name imports
the module the library's ``__init__`` would have imported it from and caches it on the package,
so every name is the very same object as with the eager import; the rest of each file runs
unchanged.
``ApiClient`` deserialises through ``getattr(kubernetes_asyncio.client.models, name)``, which
imports the model it needs. An ``__init__`` this does not recognise (a star import, no source
file) is loaded the normal way.

Installed by ``multinet/__init__.py``, so it is in place before any multinet module imports
``kubernetes_asyncio``; a process that imported the library before multinet keeps the eager
package, which behaves the same.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import re
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

_LAZY_PACKAGES = frozenset(
    {
        "kubernetes_asyncio",
        "kubernetes_asyncio.client",
        "kubernetes_asyncio.client.api",
        "kubernetes_asyncio.client.models",
    }
)

# name -> (module to import, attribute of it, or None for the module itself)
_Deferred = dict[str, tuple[str, str | None]]

# The generated initialisers write one import per line; anything else is left to run as written.
_FROM_IMPORT = re.compile(r"from ([\w.]+) import (\w+)(?: as (\w+))?\s*$")
_IMPORT_AS = re.compile(r"import ([\w.]+) as (\w+)\s*$")


def defer_submodule_imports(source: str, package: str) -> tuple[str, _Deferred] | None:
    """``source`` without its top-level one-line imports from ``package``'s submodules (blank lines
    in their place, so line numbers hold), and the names those imports bound.

    None when an import from a submodule is written some other way (several names, parentheses,
    ``*``): a by-line reading would miss it, so the caller imports the package as written.
    """
    prefix = package + "."
    deferred: _Deferred = {}
    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line.startswith((f"from {prefix}", f"import {prefix}")):
            continue
        if found := _FROM_IMPORT.match(line):
            target, name, alias = found.groups()
            deferred[alias or name] = (target, name)
        elif found := _IMPORT_AS.match(line):
            target, alias = found.groups()
            deferred[alias] = (target, None)
        else:
            return None
        lines[i] = "\n"
    return "".join(lines), deferred


def _module_getattr(module: ModuleType, deferred: _Deferred) -> Callable[[str], object]:
    def __getattr__(name: str) -> object:
        try:
            target, attribute = deferred[name]
        except KeyError:
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}") from None
        value: object = importlib.import_module(target)
        if attribute is not None:
            value = getattr(value, attribute)
        setattr(module, name, value)
        return value

    return __getattr__


class _LazyInitLoader(importlib.machinery.SourceFileLoader):
    def exec_module(self, module: ModuleType) -> None:
        source = self.get_source(self.name)
        lazy = None if source is None else defer_submodule_imports(source, self.name)
        if lazy is None:
            super().exec_module(module)
            return
        rest, deferred = lazy
        module.__getattr__ = _module_getattr(module, deferred)  # type: ignore[method-assign]
        module.__dir__ = lambda: sorted(set(vars(module)) | set(deferred))  # type: ignore[method-assign]
        exec(compile(rest, self.path, "exec"), module.__dict__)


class _LazyInitFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _LAZY_PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec  # not a plain source package: the normal import
        spec.loader = _LazyInitLoader(fullname, spec.origin or "")
        return spec


def install() -> None:
    """Idempotent. Only affects those packages when they are imported after this call."""
    if not any(isinstance(finder, _LazyInitFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LazyInitFinder())
