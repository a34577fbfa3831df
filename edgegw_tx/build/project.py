"""
The cargo project generated for one endpoint.

A project lives in a directory named by the endpoint id, never by user text, and
its ``src/main.rs`` is the user's code verbatim so rustc's line numbers are the
user's line numbers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

SDK_CRATE = "rust-edge-gateway-sdk"

_ENDPOINT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")

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
    """
    One entry of ``[dependencies]``.

    ``path`` is only ever the SDK's (chosen by the gateway); user-chosen
    dependencies have a version requirement and come from the crate source.
    """

    name: str
    version: str | None = None
    features: tuple[str, ...] = ()
    default_features: bool = True
    path: str | None = None

    @property
    def lib_name(self) -> str:
        """How code names the crate: ``foo-bar`` is ``foo_bar::``."""
        return self.name.replace("-", "_")

    def toml(self) -> str:
        """The line of Cargo.toml: ``regex = "1"`` or ``chrono = { version = "0.4", features = [...] }``."""
        if self.path is None and self.version is not None and self.default_features and not self.features:
            return f"{self.name} = {toml_string(self.version)}"
        parts = []
        if self.path is not None:
            parts.append("path = " + toml_string(self.path))
        if self.version is not None:
            parts.append("version = " + toml_string(self.version))
        if not self.default_features:
            parts.append("default-features = false")
        if self.features:
            parts.append("features = [" + ", ".join(toml_string(f) for f in self.features) + "]")
        return f"{self.name} = {{ {', '.join(parts)} }}"


# Always there: the handler's own `serde::` and `serde_json::` paths (the SDK's
# prelude re-exports the derives and `json!`, but code may name the crates).
BASE_CRATES = (
    Dependency("serde", "1", ("derive",)),
    Dependency("serde_json", "1"),
)

TOKIO_FEATURES = ("rt", "macros", "time", "sync")

# Crates a handler gets by naming them (`chrono::…`, `use uuid::Uuid`, `extern
# crate regex`, `#[tokio::main]`), in manifest order.  Each version requirement
# is met by Debian's packaged crate (librust-*-dev, see tools/setup-crates) and
# by crates.io alike, so a handler builds the same from either crate source;
# the features are the ones handler code expects (serde support, uuid v4).
# Adding a crate is one line here, one package in tools/setup-crates and a row
# in docs/dependencies.md.
KNOWN_CRATES = (
    Dependency("chrono", "0.4", ("serde",)),  # Debian: 0.4.23
    Dependency("uuid", "1", ("v4", "serde")),  # Debian: 1.2.1
    Dependency("regex", "1"),  # Debian: 1.7.1
    Dependency("base64", "0.13"),  # Debian: 0.13.0 (0.21+ changed the API)
    Dependency("tokio", "1", TOKIO_FEATURES),  # Debian: 1.24.2
)

# SDK macros that need more than the SDK's defaults: macro name → (SDK
# features, crates from KNOWN_CRATES).  The async loops run the handler on the
# SDK's tokio runtime; tokio is also a direct dependency so the handler's own
# `tokio::` paths and `#[tokio::…]` attributes resolve.
KNOWN_MACROS = {
    "handler_loop_async": (("async",), ("tokio",)),
    "handler_loop_async_result": (("async",), ("tokio",)),
}


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


# -- explicit dependencies (endpoint setting `dependencies`) --------------------
#
# The one representation, from the admin API through the store to
# ``Builder.build(extra_dependencies=...)``: a JSON object mapping a crate name
# to a version requirement string, or to {"version", "features",
# "default-features"}.  Nothing else (no path, git or registry keys), so a user
# cannot make the build read arbitrary paths or fetch from arbitrary places.

MAX_DEPENDENCIES = 32
MAX_FEATURES = 32
_CRATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# A cargo version requirement: "1", "0.8", "^1.2.3", "=1.0.0", ">=1, <2", "*",
# "1.0.0-beta.2": digits, dots, operators, commas, spaces and letters only.
_VERSION_REQ = re.compile(r"[0-9A-Za-z.*^~=<>, +-]{1,64}")
_FEATURE = re.compile(r"[A-Za-z0-9_+./-]{1,64}")
_SPEC_KEYS = ("version", "features", "default-features")
VERSION_HELP = 'a version requirement such as "1.2", "=0.4.23" or "^1"'


class InvalidDependency(ValueError):
    """
    An explicit dependency the build will not accept.  ``key`` locates it under
    the dependencies object (``""``, ``"chrono"``, ``"chrono.features"``) and
    ``problem`` completes a sentence starting with the field's name.
    """

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"dependency '{key}' {problem}" if key else f"dependencies {problem}")


def _shown(name: Any) -> str:
    text = name if isinstance(name, str) else repr(name)
    return text if len(text) <= 64 else text[:61] + "..."


def _version(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _VERSION_REQ.fullmatch(value) or not re.search(r"[0-9*]", value):
        raise InvalidDependency(
            key, f"must be {VERSION_HELP} (digits, dots, letters, spaces and ^ ~ = < > * , + -)"
        )
    return value


def check_dependencies(value: Any) -> dict[str, Any]:
    """
    Validate explicit dependencies; return them normalised (features sorted
    and unique) for storing.  Raises ``InvalidDependency``.
    """
    if not isinstance(value, Mapping):
        raise InvalidDependency(
            "", "must be an object mapping crate names to version requirements"
        )
    if len(value) > MAX_DEPENDENCIES:
        raise InvalidDependency("", f"may name at most {MAX_DEPENDENCIES} crates")
    checked: dict[str, Any] = {}
    for name, spec in value.items():
        key = _shown(name)
        if not isinstance(name, str) or not _CRATE_NAME.fullmatch(name):
            raise InvalidDependency(
                key, "is not a crate name: use 1-64 characters from A-Z a-z 0-9 _ - starting with a letter"
            )
        if name.replace("_", "-").lower() == SDK_CRATE:
            raise InvalidDependency(
                key, "cannot be set: the gateway's SDK is always a dependency, by its own path"
            )
        if isinstance(spec, str):
            checked[name] = _version(key, spec)
            continue
        if not isinstance(spec, Mapping):
            raise InvalidDependency(
                key, f'must be {VERSION_HELP}, or an object {{"version", "features", "default-features"}}'
            )
        for extra in spec:
            if extra not in _SPEC_KEYS:
                raise InvalidDependency(
                    f"{key}.{_shown(extra)}",
                    "is not allowed: a dependency may only have version, features and default-features",
                )
        if "version" not in spec:
            raise InvalidDependency(f"{key}.version", "is missing: " + VERSION_HELP + " is required")
        out: dict[str, Any] = {"version": _version(f"{key}.version", spec["version"])}
        if "features" in spec:
            features = spec["features"]
            if (
                not isinstance(features, list)
                or len(features) > MAX_FEATURES
                or not all(isinstance(f, str) and _FEATURE.fullmatch(f) for f in features)
            ):
                raise InvalidDependency(
                    f"{key}.features",
                    f"must be a list of at most {MAX_FEATURES} feature names (A-Z a-z 0-9 _ + - / .)",
                )
            out["features"] = sorted(set(features))
        if "default-features" in spec:
            if not isinstance(spec["default-features"], bool):
                raise InvalidDependency(f"{key}.default-features", "must be true or false")
            out["default-features"] = spec["default-features"]
        checked[name] = out
    return checked


def _explicit(name: str, spec: str | Mapping[str, Any]) -> Dependency:
    if isinstance(spec, str):
        return Dependency(name, spec)
    return Dependency(
        name,
        spec["version"],
        tuple(spec.get("features", ())),
        spec.get("default-features", True),
    )


# -- dependencies detected in the code ----------------------------------------

# A raw string's opening: r"…", r#"…"#, br"…", cr#"…"# (any number of #).
_RAW_START = re.compile(r'[bc]?r(#*)"')
_WORD = re.compile(r"\w+")


def strip_comments_and_literals(code: str) -> str:
    """
    The code with comments, string and character literals blanked, so that
    ``// uses chrono::Utc`` or ``"uuid::"`` mention no crate.

    A small Rust lexer: ``//`` comments, nested ``/* */`` comments, strings
    with escapes, raw strings with any number of ``#``, byte and C string
    prefixes, character literals (``'"'``, ``'\\''``, ``'\\u{22}'``) told apart
    from lifetimes and labels (``'a``, ``'static``).  Comments become a space,
    literals become ``""``; whatever is unterminated runs to the end.
    """
    out: list[str] = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c == "/" and code.startswith("//", i):
            end = code.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif c == "/" and code.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if code.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif code.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif c == '"':
            i += 1
            while i < n and code[i] != '"':
                i += 2 if code[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            if code.startswith("\\", i + 1):
                # '\n', '\'', '\\', '\u{1F600}': the escaped character is skipped
                end = code.find("'", i + 3)
                i = n if end < 0 else end + 1
                out.append('""')
            elif i + 2 < n and code[i + 2] == "'":
                i += 3  # 'x', '"'
                out.append('""')
            else:
                i += 1  # a lifetime or label: the name follows as a word
                out.append("'")
        elif c.isalnum() or c == "_":
            raw = _RAW_START.match(code, i)
            if raw:
                end = code.find('"' + raw.group(1), raw.end())
                i = n if end < 0 else end + 1 + len(raw.group(1))
                out.append('""')
            else:
                word = _WORD.match(code, i)
                end = word.end() if word else i + 1
                out.append(code[i:end])
                i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _uses_crate(lib_name: str) -> re.Pattern[str]:
    """``name::`` as a path's first segment (or after a leading ``::``), ``use name;``, ``extern crate name``."""
    name = re.escape(lib_name)
    return re.compile(
        rf"(?<![\w:])(?:::\s*)?{name}\s*::"
        rf"|\b(?:use|extern\s+crate)\s+(?:::\s*)?{name}\b"
    )


def _invokes(macro: str) -> re.Pattern[str]:
    """``macro!`` or ``path::macro!``."""
    return re.compile(rf"(?<!\w){re.escape(macro)}\s*!")


_CRATE_RULES = tuple((dep, _uses_crate(dep.lib_name)) for dep in KNOWN_CRATES)
_MACRO_RULES = tuple((_invokes(name), needs) for name, needs in KNOWN_MACROS.items())


def detect(code: str) -> list[Dependency]:
    """
    The dependencies a handler's code asks for, in ``KNOWN_CRATES`` order.

    A pure function of the code.  When the handler uses an SDK macro that
    needs an SDK feature, the list starts with ``Dependency(SDK_CRATE,
    features=...)`` (no path: ``dependencies`` supplies it).
    """
    text = strip_comments_and_literals(code)
    wanted: set[str] = set()
    sdk_features: set[str] = set()
    for pattern, (features, crates) in _MACRO_RULES:
        if pattern.search(text):
            sdk_features.update(features)
            wanted.update(crates)
    found = [dep for dep, pattern in _CRATE_RULES if dep.name in wanted or pattern.search(text)]
    if sdk_features:
        found.insert(0, Dependency(SDK_CRATE, features=tuple(sorted(sdk_features))))
    return found


def dependencies(
    code: str, sdk_path: str, extra: Mapping[str, Any] | None = None
) -> list[Dependency]:
    """
    The dependency set of a handler, in manifest order: the SDK (by absolute
    path, with the features its macros need), serde and serde_json, the crates
    the code names (``detect``), then explicit crates by name.  An explicit
    entry replaces an automatic one of the same name in place; the SDK cannot
    be replaced.  Raises ``InvalidDependency`` (a ``ValueError``) for a bad
    explicit entry: everything here is written into Cargo.toml.
    """
    explicit = check_dependencies({} if extra is None else extra)
    sdk = Dependency(SDK_CRATE, path=os.path.abspath(sdk_path))
    chosen: dict[str, Dependency] = {sdk.name: sdk}
    chosen.update((d.name, d) for d in BASE_CRATES)
    for dep in detect(code):
        if dep.name == SDK_CRATE:
            chosen[SDK_CRATE] = replace(sdk, features=dep.features)
        else:
            chosen[dep.name] = dep
    for name in sorted(explicit):
        chosen[name] = _explicit(name, explicit[name])
    return list(chosen.values())


def dependency_names(deps: list[Dependency]) -> list[str]:
    """
    What a build reports: each crate's name in manifest order, and right after
    the SDK each SDK feature the gateway turned on as ``<sdk>/<feature>``
    (``rust-edge-gateway-sdk/async``), in cargo's ``crate/feature`` notation.
    """
    names = []
    for dep in deps:
        names.append(dep.name)
        if dep.name == SDK_CRATE:
            names.extend(f"{dep.name}/{feature}" for feature in dep.features)
    return names


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
