"""
The cargo project generated for one endpoint.

A project lives in a directory named by the endpoint id, never by user text, and
its ``src/main.rs`` is the user's code verbatim so rustc's line numbers are the
user's line numbers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

SDK_CRATE = "rust-edge-gateway-sdk"

_ENDPOINT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
_CRATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# A cargo version requirement: "1", "0.8", "^1.2.3", "=1.0.0", ">=1, <2", "*".
_VERSION_REQ = re.compile(r"[0-9A-Za-z.*^~=<>, +-]{1,64}")

# The same for every endpoint: cargo only shares the compiled dependencies in
# the common target directory between packages whose profiles are identical.
# Measured with the hello handler and the real SDK (cargo 1.95, Debian crates,
# 2 cores; medians of 5): a new handler with warm dependencies builds in 0.32 s
# with codegen-units = 1 against 0.37 s with the default 16, and its binary is
# 10% smaller (635 KB); cold builds are ~7-8 s either way.  `incremental = true`
# makes an edit of the same endpoint 0.10 s instead of 0.32 s but a new handler
# no faster, and keeps ~3 MB of state per endpoint in the shared target, so it
# stays off.  Panics must unwind: the SDK catches them and answers 500.
RELEASE_PROFILE = """\
[profile.release]
opt-level = 3
debug = false
incremental = false
codegen-units = 1
lto = false
panic = "unwind"
"""


@dataclass(frozen=True)
class Dependency:
    """One line of ``[dependencies]``: the crate name and its TOML value."""

    name: str
    spec: str

    def toml(self) -> str:
        return f"{self.name} = {self.spec}"


def validate_endpoint_id(endpoint_id: str) -> str:
    """The id names a directory and a crate, so only [A-Za-z0-9_-] may pass."""
    if not isinstance(endpoint_id, str) or not _ENDPOINT_ID.fullmatch(endpoint_id):
        raise ValueError(
            f"invalid endpoint id {endpoint_id!r}: use 1-100 characters from A-Z a-z 0-9 _ -"
        )
    return endpoint_id


def package_name(endpoint_id: str) -> str:
    """
    The crate (and binary) name for an endpoint.

    Hyphens are kept rather than mapped to underscores so that ids ``a-b`` and
    ``a_b`` get different binaries in the shared target directory.
    """
    return "h-" + validate_endpoint_id(endpoint_id)


def toml_string(text: str) -> str:
    """A TOML basic string (JSON escaping is a subset TOML accepts)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dependencies(
    code: str, sdk_path: str, extra: Mapping[str, str] | None = None
) -> list[Dependency]:
    """
    The dependency set of a handler.

    A function of the code so that detecting ``chrono::``, ``uuid::`` and the
    like (spec/SDK.md) is one more rule here.  ``extra`` maps crate names to
    version requirements chosen by the caller; both are validated because they
    are written into Cargo.toml.
    """
    deps = [
        Dependency(SDK_CRATE, "{ path = " + toml_string(os.path.abspath(sdk_path)) + " }"),
        Dependency("serde", '{ version = "1", features = ["derive"] }'),
        Dependency("serde_json", '"1"'),
    ]
    taken = {d.name for d in deps}
    for name, version in sorted((extra or {}).items()):
        if not isinstance(name, str) or not _CRATE_NAME.fullmatch(name):
            raise ValueError(f"invalid crate name {name!r}")
        if not isinstance(version, str) or not _VERSION_REQ.fullmatch(version):
            raise ValueError(f"invalid version requirement {version!r} for crate {name}")
        if name in taken:
            continue
        taken.add(name)
        deps.append(Dependency(name, toml_string(version)))
    return deps


def manifest(package: str, deps: list[Dependency]) -> str:
    """
    Cargo.toml text.

    The empty ``[workspace]`` makes the project its own workspace root, so a
    Cargo.toml in some parent of the data directory cannot capture it.
    """
    lines = [
        "[package]",
        f"name = {toml_string(package)}",
        'version = "0.1.0"',
        'edition = "2021"',
        "publish = false",
        "",
        "[dependencies]",
        *(d.toml() for d in deps),
        "",
        RELEASE_PROFILE,
        "[workspace]",
        "",
    ]
    return "\n".join(lines)


def write_if_changed(path: Path, text: str) -> None:
    """
    Write a small file unless it already holds ``text``.

    Synchronous on purpose: a Cargo.toml and a main.rs are a few kilobytes and
    take microseconds to write, far less than a thread hop.  Leaving an
    unchanged file alone keeps its mtime, which cargo's fingerprints use.
    """
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_project(project_dir: Path, manifest_text: str, code: str) -> Path:
    """Write Cargo.toml and src/main.rs; returns the path of main.rs."""
    write_if_changed(project_dir / "Cargo.toml", manifest_text)
    main_rs = project_dir / "src" / "main.rs"
    write_if_changed(main_rs, code)
    return main_rs
