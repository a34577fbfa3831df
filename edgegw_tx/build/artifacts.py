"""
Content-addressed storage of compiled handlers.

A digest names everything that decides the binary: the code, the dependency
set and profile, the SDK's version and sources, the toolchain, the crate source.
Identical inputs never compile twice, and an old digest is an instant rollback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import tomllib
from pathlib import Path
from collections.abc import Callable
from typing import Any, BinaryIO

from .cargo import BuildError

_DIGEST = re.compile(r"[0-9a-f]{64}")
BINARY_NAME = "handler"
METADATA_NAME = "build.json"


def sdk_fingerprint(sdk_path: str) -> str:
    """
    The SDK's version and a sha256 of its Cargo.toml and src/**.

    Read on every build so that editing the SDK invalidates the cache without a
    restart; it is a handful of small files, well under a millisecond.
    """
    root = Path(sdk_path)
    manifest = root / "Cargo.toml"
    try:
        manifest_bytes = manifest.read_bytes()
    except OSError as e:
        raise BuildError(f"the Rust SDK is missing: cannot read {manifest} ({e.strerror})") from e
    try:
        version = tomllib.loads(manifest_bytes.decode("utf-8"))["package"]["version"]
    except (ValueError, KeyError, TypeError):
        version = "unknown"
    h = hashlib.sha256()
    files = [manifest] + sorted(p for p in (root / "src").rglob("*") if p.is_file())
    for path in files:
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        h.update(b"%d:%s%d:" % (len(rel), rel, len(data)))
        h.update(data)
    return f"{version}+{h.hexdigest()}"


def compute_digest(
    code: str, manifest_text: str, sdk: str, toolchain: str, crate_source: str
) -> str:
    """sha256 over the inputs, JSON-encoded so no two input tuples collide."""
    blob = json.dumps(
        {
            "code": code,
            "manifest": manifest_text,
            "sdk": sdk,
            "toolchain": toolchain,
            "crate_source": crate_source,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def is_digest(text: str) -> bool:
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


class ArtifactStore:
    """``<root>/<digest>/handler`` (mode 0755) and ``build.json`` beside it."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, digest: str) -> str | None:
        """The stored binary for ``digest``, or None; anything but 64 hex digits is None."""
        if not is_digest(digest):
            return None
        binary = self.root / digest / BINARY_NAME
        return str(binary) if binary.is_file() else None

    def metadata(self, digest: str) -> dict[str, Any]:
        """What ``put`` recorded about the build (warnings); empty when unknown."""
        if not is_digest(digest):
            return {}
        try:
            recorded: dict[str, Any] = json.loads((self.root / digest / METADATA_NAME).read_text("utf-8"))
            return recorded
        except (OSError, ValueError):
            return {}

    def put(self, digest: str, source: str | BinaryIO, metadata: dict[str, Any]) -> str:
        """
        Copy ``source`` (a path, or a file open for reading) in as the binary
        for ``digest``; blocking, so callers run it in a thread.  Files are written under temporary names and renamed,
        so a reader sees a complete binary or none, and the binary goes last:
        its presence means the artifact is whole.
        """
        if not is_digest(digest):
            raise ValueError(f"not a digest: {digest!r}")
        folder = self.root / digest
        folder.mkdir(parents=True, exist_ok=True)
        self._atomic(folder, METADATA_NAME, lambda f: f.write(json.dumps(metadata).encode()), 0o644)
        self._atomic(folder, BINARY_NAME, lambda f: _copy_from(source, f), 0o755)
        return str(folder / BINARY_NAME)

    def remove(self, digest: str) -> bool:
        """
        Delete the folder of ``digest`` (blocking: callers run it in a thread);
        True when there was one.  A worker running the binary keeps running
        (the file lives on until it exits), but no new worker can start from it.
        """
        if not is_digest(digest):
            raise ValueError(f"not a digest: {digest!r}")
        folder = self.root / digest
        if not folder.is_dir():
            return False
        shutil.rmtree(folder)
        return True

    @staticmethod
    def _atomic(folder: Path, name: str, write: Callable[[BinaryIO], object], mode: int) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, mode)
            os.replace(tmp, folder / name)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def _copy_from(source: str | BinaryIO, dest: BinaryIO) -> None:
    if not isinstance(source, str):
        shutil.copyfileobj(source, dest, 1 << 20)
        return
    with open(source, "rb") as src:
        shutil.copyfileobj(src, dest, 1 << 20)
