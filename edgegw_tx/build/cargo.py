"""
Running cargo and rustc as child processes and reading what they say.

Everything runs through ``reactor.spawnProcess`` so a build never blocks the
reactor; cargo's ``--message-format=json`` lines are turned into diagnostics
counted in the user's own lines.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from twisted.internet.defer import Deferred

from ..hostcommands import ProcessOutput as ProcessOutput, Running as Running, run as run
from .project import write_if_changed

DEBIAN_REGISTRY = "/usr/share/cargo/registry"
CRATE_SOURCES = ("auto", "debian", "crates-io")

# tools/cargo-debian.toml: build from Debian's packaged crates with no network.
DEBIAN_CARGO_CONFIG = f"""\
# Written by edgegw: build from Debian's packaged crates (librust-*-dev), offline.
[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "{DEBIAN_REGISTRY}"

[net]
offline = true
"""

CARGO_ARGS = ("build", "--release", "--message-format=json")

# Environment variables passed through to cargo and rustc when the gateway has
# them; everything else in the gateway's environment stays out of builds.
_PASSED_THROUGH = (
    "HOME",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "TMPDIR",
    "LANG",
)
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_KEPT_LEVELS = {"error", "warning", "error: internal compiler error"}


class BuildError(Exception):
    """Base of the build plane's failures."""


class CargoNotFound(BuildError):
    """No cargo executable could be found; the message says how to fix it."""


class CompileFailed(BuildError):
    """
    The handler did not compile.  ``diagnostics`` are dicts
    ``{level, message, line, column, rendered}`` in the user's line numbers.
    """

    status = 422

    def __init__(self, diagnostics: list[dict[str, Any]]):
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d["level"] != "warning"] or diagnostics
        first = errors[0] if errors else None
        if first is None:
            summary = "compilation failed"
        elif first["line"] is not None:
            summary = f"line {first['line']}: {first['message']}"
        else:
            summary = first["message"].splitlines()[0] if first["message"] else "compilation failed"
        super().__init__(summary)


def find_cargo(
    explicit: str | None = None,
    *,
    path: str | None = None,
    home: str | None = None,
) -> str:
    """
    The cargo to use: ``explicit`` if given, else cargo on PATH, else
    ``~/.cargo/bin/cargo`` (rustup's default, often missing from a daemon's
    PATH).  ``path`` and ``home`` default to the process's own.
    """
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return os.path.abspath(explicit)
        raise CargoNotFound(
            f"--cargo {explicit!r} is not an executable file; pass the path of "
            "cargo (e.g. ~/.cargo/bin/cargo)"
        )
    found = shutil.which("cargo", path=path if path is not None else os.environ.get("PATH"))
    if found:
        return os.path.abspath(found)
    home = home if home is not None else os.path.expanduser("~")
    candidate = os.path.join(home, ".cargo", "bin", "cargo")
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return os.path.abspath(candidate)
    raise CargoNotFound(
        "cargo was not found on PATH or in ~/.cargo/bin. Install the Rust "
        "toolchain (https://rustup.rs: curl --proto '=https' --tlsv1.2 -sSf "
        "https://sh.rustup.rs | sh, or your distribution's cargo package) or "
        "pass --cargo /path/to/cargo."
    )


def resolve_crate_source(crate_source: str, registry: str = DEBIAN_REGISTRY) -> str:
    """``auto`` becomes ``debian`` when Debian's registry has serde_json, else ``crates-io``."""
    if crate_source not in CRATE_SOURCES:
        raise ValueError(f"crate_source must be one of {', '.join(CRATE_SOURCES)}, not {crate_source!r}")
    if crate_source != "auto":
        return crate_source
    if glob.glob(os.path.join(glob.escape(registry), "serde_json-*")):
        return "debian"
    return "crates-io"


def child_env(cargo: str, target_dir: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """
    The explicit environment of cargo and rustc: cargo's directory first on PATH
    (rustup's rustc proxy lives beside it; the linker ``cc`` comes from the rest),
    the shared target directory, and no colour so ``rendered`` is plain text.
    """
    environ = dict(os.environ if environ is None else environ)
    path = environ.get("PATH") or _DEFAULT_PATH
    env = {
        "PATH": os.pathsep.join([os.path.dirname(cargo), path]),
        "CARGO_TARGET_DIR": target_dir,
        "CARGO_TERM_COLOR": "never",
    }
    for name in _PASSED_THROUGH:
        if environ.get(name):
            env[name] = environ[name]
    return env


def rustc_for(cargo: str, env: dict[str, str]) -> str:
    """The rustc cargo will run: the one on the child's PATH (cargo's directory first)."""
    return shutil.which("rustc", path=env["PATH"]) or os.path.join(os.path.dirname(cargo), "rustc")


@dataclass
class CargoReport:
    """cargo's JSON messages for one build: diagnostics and the binary's path."""

    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    executable: str | None = None


def _span_in(span: dict[str, Any] | None, main_rs: str) -> dict[str, Any] | None:
    """The span itself if it lies in the user's file, else the macro call site that does."""
    while span is not None:
        if _is_main(span.get("file_name", ""), main_rs):
            return span
        span = (span.get("expansion") or {}).get("span")
    return None


def _is_main(file_name: str, main_rs: str) -> bool:
    return file_name == "src/main.rs" or (os.path.isabs(file_name) and file_name == main_rs)


# rustc's rendered text: a location line `  --> file:line:col` (or `:::` for
# a secondary file) opens a snippet whose lines are in the gutter: `12 | code`,
# `   |     ^^^ label`, `12 + added` in suggestions, `...` for elided lines.
_LOCATION = re.compile(r"^\s*(?:-->|:::)\s+(.+?):\d+:\d+\s*$")
_GUTTER = re.compile(r"^\s*(?:\d+\s*[|+~-]|\|)(?:\s|\||$)|^\.\.\.\s*$")


def without_foreign_source(text: str, main_rs: str) -> str:
    """
    ``text`` (rustc's rendered diagnostics, or cargo's stderr) without the
    source lines it quotes from any file but the user's main.rs: the location
    line stays, so the path and line are still named, the snippet goes.
    Included files (``include!``, ``#[path]``) may be anything the build can
    read; their text is never shown.
    """
    out = []
    foreign = False
    for line in text.splitlines():
        place = _LOCATION.match(line)
        if place:
            foreign = not _is_main(place.group(1), main_rs)
            out.append(line)
        elif foreign and _GUTTER.match(line):
            continue
        else:
            if not line.startswith(" ") and line.strip():
                foreign = False  # a new message: its own location line follows
            out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def diagnostic(message: dict[str, Any], main_rs: str) -> dict[str, Any]:
    """
    One rustc diagnostic as the gateway reports it.  Its place is the primary
    span in the user's main.rs, or the user's macro call that led to it
    (an error inside ``handler_loop!`` points at the ``handler_loop!`` line).
    Its ``rendered`` text quotes no file but main.rs (``without_foreign_source``).
    """
    spans = message.get("spans") or []
    ordered = [s for s in spans if s.get("is_primary")] + [s for s in spans if not s.get("is_primary")]
    place = None
    for span in ordered:
        place = _span_in(span, main_rs)
        if place is not None:
            break
    text = message.get("message", "")
    rendered = without_foreign_source(message.get("rendered") or text, main_rs)
    if any(_in_included_file(s, main_rs) for s in spans if s.get("is_primary")):
        # rustc quotes the included file's tokens ("cannot find value `root`").
        text, rendered = _QUOTED.sub("`…`", text), _QUOTED.sub("`…`", rendered)
    return {
        "level": "error" if message.get("level", "").startswith("error") else message.get("level"),
        "message": text,
        "line": place["line_start"] if place else None,
        "column": place["column_start"] if place else None,
        "rendered": rendered,
    }


_QUOTED = re.compile(r"`[^`\n]*`")


def _in_included_file(span: dict[str, Any], main_rs: str) -> bool:
    """
    A span in a file the user pulled in with ``include!`` or ``#[path]``: not
    main.rs and not reached through a macro (the SDK's ``handler_loop!``
    expands from the user's line; an included file's text has no expansion).
    """
    return not _is_main(span.get("file_name", ""), main_rs) and not span.get("expansion")


def parse_messages(lines: Iterable[bytes | str], main_rs: str, package: str | None = None) -> CargoReport:
    """
    Read cargo's JSON lines.  Errors are kept from any crate (an SDK that does
    not compile must not fail silently); warnings only from the handler's own
    crate (``package``), because the user can do nothing about the SDK's.
    """
    report = CargoReport()
    for raw in lines:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        reason = msg.get("reason")
        target = msg.get("target") or {}
        if reason == "compiler-message":
            inner = msg.get("message") or {}
            if inner.get("level") not in _KEPT_LEVELS:
                continue
            ours = package is None or target.get("name") == package
            if inner.get("level") == "warning" and not ours:
                continue
            report.diagnostics.append(diagnostic(inner, main_rs))
        elif reason == "compiler-artifact" and msg.get("executable"):
            if package is None or target.get("name") == package:
                report.executable = msg["executable"]
    return report


_NOISE = re.compile(r"^\s*(Compiling|Checking|Locking|Updating|Downloaded|Downloading|Blocking|Finished|Fresh|Adding)\b")


def stderr_diagnostic(
    stderr: bytes, code: int | None, signal: int | None = None, main_rs: str = "src/main.rs"
) -> dict[str, Any]:
    """
    A diagnostic made from cargo's stderr, for failures that are not rustc's
    (a dependency that cannot be resolved, a broken toolchain, a timeout).
    Source lines it quotes from files other than ``main_rs`` are left out.
    """
    text = without_foreign_source(stderr.decode("utf-8", "replace"), main_rs)
    useful = "\n".join(line for line in text.splitlines() if not _NOISE.match(line)).strip()
    if signal is not None:
        message = f"the build was stopped by signal {signal} (timed out or killed)"
        useful = (message + "\n" + useful).strip()
    elif not useful:
        useful = f"cargo exited with code {code} and printed nothing"
    return {"level": "error", "message": useful, "line": None, "column": None, "rendered": useful}


def failure_diagnostics(
    report: CargoReport, output: ProcessOutput, main_rs: str = "src/main.rs"
) -> list[dict[str, Any]]:
    """The diagnostics of a failed build, never empty: cargo's stderr speaks when rustc did not."""
    if any(d["level"] == "error" for d in report.diagnostics) and output.signal is None:
        return report.diagnostics
    return [stderr_diagnostic(output.stderr, output.code, output.signal, main_rs)] + report.diagnostics


def toolchain_identity(reactor: Any, cargo: str, env: dict[str, str], cwd: str) -> Deferred[str]:
    """
    ``rustc -vV`` of the toolchain cargo will use (its version, commit, host
    and LLVM), which is part of every artifact's digest.  Run in ``cwd`` because
    a rust-toolchain.toml there would change rustup's choice.
    """
    d = run(reactor, [rustc_for(cargo, env), "-vV"], env, cwd, timeout=60)

    def check(out: ProcessOutput) -> str:
        if out.code != 0:
            raise BuildError(
                "`rustc -vV` failed, so the Rust toolchain is not usable: "
                + (out.stderr.decode("utf-8", "replace").strip() or f"exit code {out.code}")
            )
        return out.stdout.decode("utf-8", "replace").strip()

    return d.addCallback(check)


def toolchain_sysroot(reactor: Any, cargo: str, env: dict[str, str], cwd: str) -> Deferred[str]:
    """
    ``rustc --print sysroot``: the toolchain's own directory (under rustup's
    home for a rustup proxy, ``/usr`` for Debian's rustc), which sandboxed
    builds show read-only and run ``bin/cargo`` from, bypassing rustup.
    """
    d = run(reactor, [rustc_for(cargo, env), "--print", "sysroot"], env, cwd, timeout=60)

    def check(out: ProcessOutput) -> str:
        sysroot = out.stdout.decode("utf-8", "replace").strip()
        if out.code != 0 or not os.path.isabs(sysroot):
            raise BuildError(
                "`rustc --print sysroot` failed: "
                + (out.stderr.decode("utf-8", "replace").strip() or f"exit code {out.code}")
            )
        return sysroot

    return d.addCallback(check)


def write_crate_source_config(build_root: Path, crate_source: str) -> None:
    """
    Write (for ``debian``) or remove (for ``crates-io``) the cargo config beside
    the projects; cargo finds ``<build_root>/.cargo/config.toml`` by walking up
    from a project directory.  Small and synchronous, like the project files.
    """
    config = build_root / ".cargo" / "config.toml"
    if crate_source == "debian":
        write_if_changed(config, DEBIAN_CARGO_CONFIG)
    else:
        try:
            config.unlink()
        except FileNotFoundError:
            pass
