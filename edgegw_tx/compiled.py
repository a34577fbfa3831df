"""
The request path's modules compiled to C with mypyc, and the check that the
compiled ones are what the sources say.

Every request runs through these modules; compiled, they cost a quarter to a
third less CPU per request (docs/performance.md).  ``make setup`` compiles
them in place (``tools/compile-hot-path``), writing a digest of their sources
to ``MANIFEST``.  At import (``edgegw_tx/__init__.py`` calls ``choose``) the
compiled modules are used only when the sources still match that digest;
otherwise, or with ``EDGEGW_PURE_PYTHON=1``, every one of them is imported
from its ``.py`` file instead.  All or none: compiled modules call each other
directly, so a compiled module beside a pure copy of its neighbour would see
two different classes of the same name.

This module imports nothing of the package: the compile tool reads
``MODULES`` from it before anything is compiled.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["MANIFEST", "MODULES", "PURE_ENV", "choose", "source_digest", "state"]

MODULES = (
    "edgegw_tx.gateway.http",
    "edgegw_tx.gateway.dispatch",
    "edgegw_tx.gateway.routes",
    "edgegw_tx.gateway.target",
    "edgegw_tx.gateway.observe",
    "edgegw_tx.workers.pool",
    "edgegw_tx.workers.process",
    "edgegw_tx.workers.framing",
    "edgegw_tx.observability.metrics",
    "edgegw_tx.observability.trace",
    "edgegw_tx.observability.accesslog",
)
"""The modules compiled, in the package's dotted names."""

MANIFEST = "compiled-sources.sha256"
"""File in the package directory: the digest of the sources the compiled modules were built from."""

PURE_ENV = "EDGEGW_PURE_PYTHON"
"""Set to ``1`` to run the pure-Python modules even when compiled ones match."""

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: "compiled", or "pure Python (<why>)"; set by ``choose``.
state = "not chosen yet"


def source_path(module: str, package_dir: str = _PACKAGE_DIR) -> str:
    """The ``.py`` file of one of ``MODULES``."""
    relative = module.split(".")[1:]
    return os.path.join(package_dir, *relative) + ".py"


def source_digest(package_dir: str = _PACKAGE_DIR, modules: Sequence[str] = MODULES) -> str:
    """SHA-256 over the compiled modules' names and sources, in ``MODULES`` order."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(module.encode("ascii") + b"\0")
        with open(source_path(module, package_dir), "rb") as f:
            digest.update(f.read())
        digest.update(b"\0")
    return digest.hexdigest()


def _compiled_file(module: str, package_dir: str) -> str | None:
    """The extension module file beside ``module``'s source, if there is one."""
    base = source_path(module, package_dir)[: -len(".py")]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.exists(base + suffix):
            return base + suffix
    return None


def why_pure(
    package_dir: str = _PACKAGE_DIR,
    modules: Sequence[str] = MODULES,
    environ: dict[str, str] | os._Environ[str] = os.environ,
) -> str | None:
    """None when the compiled modules may be used, else the reason they may not."""
    if environ.get(PURE_ENV, "") not in ("", "0"):
        return f"{PURE_ENV} is set"
    missing = [m for m in modules if _compiled_file(m, package_dir) is None]
    if len(missing) == len(modules):
        return "not compiled (make setup compiles them)"
    if missing:
        return f"{missing[0]} is not compiled"
    try:
        with open(os.path.join(package_dir, MANIFEST), encoding="ascii") as f:
            built_from = f.read().strip()
    except OSError:
        return f"no {MANIFEST} beside the compiled modules"
    if built_from != source_digest(package_dir, modules):
        return "the sources changed since they were compiled (make setup compiles them again)"
    return None


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds ``modules`` as their ``.py`` files, ahead of the compiled ones."""

    def __init__(self, package_dir: str, modules: Sequence[str]) -> None:
        self._package_dir = package_dir
        self._modules = frozenset(modules)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        """A source spec for one of the compiled modules; None for any other."""
        if fullname not in self._modules:
            return None
        return importlib.util.spec_from_file_location(
            fullname, source_path(fullname, self._package_dir)
        )


def choose() -> str:
    """
    Decide, once per process and before any of ``MODULES`` is imported,
    whether they come compiled or as Python; returns ``state``.
    """
    global state
    if state != "not chosen yet":
        return state
    reason = why_pure()
    if reason is None:
        state = "compiled"
    else:
        sys.meta_path.insert(0, _SourceFinder(_PACKAGE_DIR, MODULES))
        state = f"pure Python ({reason})"
    return state
