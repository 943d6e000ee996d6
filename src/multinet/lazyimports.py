"""Lazy package initialisers for ``kubernetes_asyncio`` and ``pyroute2``: ~40 MB of RSS at start
that neither program needs (``bench/agent_memory.py`` measures it).

kubernetes_asyncio, why: its ``__init__.py`` imports ``client``, ``config``, ``dynamic``,
``stream``, ``utils`` and ``watch``; ``client/__init__.py`` then imports every API class (65
modules) and every model (767 modules); ``client/models/__init__.py`` and ``client/api/__init__.py``
again. That is ~860 modules and 33 MB of RSS in both programs, for the three API classes,
``ApiClient``, ``Configuration`` and the handful of models the product touches.

What: for those four package ``__init__`` files, a meta path finder compiles the library's
own source with every ``from <package>.<sub> import Name`` / ``import <package>.<sub> as name``
line turned into an entry of a PEP 562 module ``__getattr__``. The first access to a name imports
the module the library's ``__init__`` would have imported it from and caches it on the package,
so every name is the very same object as with the eager import; the rest of each file runs
unchanged.
``ApiClient`` deserialises through ``getattr(kubernetes_asyncio.client.models, name)``, which
imports the model it needs. An ``__init__`` this does not recognise (a star import, no source
file) is loaded the normal way.

pyroute2, why: the agent's inventory thread decodes messages with
``pyroute2.netlink.rtnl.marshal.MarshalRtnl``, but ``pyroute2/__init__.py`` imports every
public class of the library first (NDB and its sqlite3, IPDB, IPVS, nl80211, ...: ~100 modules,
7 MB of RSS) and uses them all in its own body, so its names cannot be deferred one by one.
What: the package's own ``__init__`` runs, unchanged, on the first access to a name the package
does not have and that is not one of its submodules (``from pyroute2 import IPRoute``,
``pyroute2.__version__``); importing a submodule, which is all the agent does, leaves it unrun.
Its only other effect is a NullHandler on the "pyroute2" logger, which changes nothing once
logging is configured (both programs configure the root logger first).

Installed by ``multinet/__init__.py``, so it is in place before any multinet module imports
either library; a process that imported one before multinet keeps the eager package, which
behaves the same.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import re
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

# Packages whose initialiser's submodule imports are deferred name by name.
_LAZY_NAMES = frozenset(
    {
        "kubernetes_asyncio",
        "kubernetes_asyncio.client",
        "kubernetes_asyncio.client.api",
        "kubernetes_asyncio.client.models",
    }
)
# Packages whose initialiser runs whole, on the first access to a name it would define.
_LAZY_INIT = frozenset({"pyroute2"})

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


class _DeferredInitLoader(importlib.machinery.SourceFileLoader):
    def exec_module(self, module: ModuleType) -> None:
        lock = threading.Lock()
        run_init = super().exec_module

        def ensure_init() -> None:
            with lock:
                if vars(module).get("__getattr__") is __getattr__:
                    del module.__getattr__, module.__dir__
                    run_init(module)

        def __getattr__(name: str) -> object:
            submodule = f"{module.__name__}.{name}"
            if importlib.machinery.PathFinder.find_spec(submodule, module.__path__) is not None:
                # `from package import submodule` asks first: let the import system load it.
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            ensure_init()
            return getattr(module, name)

        def __dir__() -> list[str]:
            ensure_init()
            return sorted(vars(module))

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        module.__dir__ = __dir__  # type: ignore[method-assign]


class _LazyInitFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _LAZY_NAMES | _LAZY_INIT:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec  # not a plain source package: the normal import
        lazy = _LazyInitLoader if fullname in _LAZY_NAMES else _DeferredInitLoader
        spec.loader = lazy(fullname, spec.origin or "")
        return spec


def install() -> None:
    """Idempotent. Only affects those packages when they are imported after this call."""
    if not any(isinstance(finder, _LazyInitFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LazyInitFinder())
