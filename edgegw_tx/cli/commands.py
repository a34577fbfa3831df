"""
The commands of ``edgegw`` and ``run``, the whole program as a function.

``run`` takes its inputs (arguments, environment, reactor, HTTP client, output
streams) and fires with the exit code, so the tests drive it against
``treq.testing.StubTreq`` and a ``Clock``, with no sockets and no real time.
``main`` wires it to the real reactor with ``twisted.internet.task.react``.

Exit codes: 0 success; 1 the gateway said no (``{"ok": false}``, a compile
failure, no such endpoint); 2 bad arguments, no API key, or the gateway cannot
be reached; 130 interrupted (Ctrl-C), except ``logs --follow``, whose normal
end is Ctrl-C and which exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import quote

from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived

DEFAULT_URL = "http://127.0.0.1:9081"
DEFAULT_DATA_DIR = "./var"
PAGE_SIZE = 100
FOLLOW_INTERVAL = 1.0
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

OK = 0
FAILED = 1
USAGE = 2
INTERRUPTED = 130
BROKEN_PIPE = 141

# Failures of the connection itself, as opposed to an answer we did not like.
_UNREACHABLE = (
    ConnectError,
    DNSLookupError,
    ResponseNeverReceived,
    ResponseFailed,
    RequestTransmissionFailed,
)

Work = Callable[["Gateway", "Context"], Deferred[int]]
"""A command once its arguments are checked: run against the gateway, fires with the exit code."""


class CommandError(Exception):
    """A failure the user is told about in one line: ``error: <message>``."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class GatewayError(CommandError):
    """The gateway answered ``{"ok": false, ...}``; ``document`` is the whole answer."""

    def __init__(self, status: int, message: str, document: Any) -> None:
        super().__init__(message, FAILED)
        self.status = status
        self.document = document


class Unreachable(CommandError):
    """The gateway could not be reached (exit 2): no answer at all, not a refusal."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the gateway at {url}: {reason}", USAGE)


# ANSI styles; used only on a terminal and without NO_COLOR (``wants_colour``).
STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "error": "1;31", "warning": "1;33"}
# How a status (an endpoint's, a node's) is coloured in tables and status lines.
STATUS_STYLES = {
    "running": "green",
    "up": "green",
    "compiled": "yellow",
    "created": "yellow",
    "stopped": "dim",
    "error": "red",
    "down": "red",
}


def wants_colour(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """
    Colour on a terminal only: never when ``NO_COLOR`` is set to anything
    (no-color.org), ``TERM`` is ``dumb``, or the stream is a pipe or file.
    """
    if environ.get("NO_COLOR", "") != "" or environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Console:
    """Where the commands write: ``out`` for results, ``err`` for errors and warnings."""

    def __init__(
        self,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        environ = {} if environ is None else environ
        self.colour_out = wants_colour(self.stdout, environ)
        self.colour_err = wants_colour(self.stderr, environ)

    def out(self, text: str = "") -> None:
        """A line of results."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def err(self, text: str = "") -> None:
        """A line of errors or warnings."""
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def paint(self, text: str, style: str | None, err: bool = False) -> str:
        """``text`` in ``style`` (a key of STYLES) when that stream is a colour terminal."""
        if style is None or not (self.colour_err if err else self.colour_out):
            return text
        return f"\033[{STYLES[style]}m{text}\033[0m"

    def error(self, message: str) -> None:
        """``error: <message>`` on stderr, the prefix in red on a terminal."""
        self.err(f"{self.paint('error:', 'error', err=True)} {message}")

    def warning(self, message: str) -> None:
        """``warning: <message>`` on stderr, the prefix in yellow on a terminal."""
        self.err(f"{self.paint('warning:', 'warning', err=True)} {message}")


# --- the management API ---------------------------------------------------


class Gateway:
    """
    The management API over a treq-like client (``treq.client.HTTPClient`` or
    ``StubTreq``): every call answers the envelope's ``data`` or raises
    ``GatewayError`` / ``Unreachable``.
    """

    def __init__(self, http: Any, url: str, key: str) -> None:
        self._http = http
        self.url = url.rstrip("/")
        self._key = key

    @inlineCallbacks
    def call(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        params: Mapping[str, object] | None = None,
        raw: bytes | None = None,
        content_type: str | None = None,
    ) -> Generator[Deferred[Any], Any, Any]:
        """One API call; fires with the envelope's ``data``."""
        headers = {"Authorization": "Bearer " + self._key, "Accept": "application/json"}
        kwargs: dict[str, Any] = {"headers": headers}
        if params:
            kwargs["params"] = {k: str(v) for k, v in params.items()}
        if raw is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
            kwargs["data"] = raw
        elif json_body is not None:
            kwargs["json"] = json_body
        try:
            response = yield self._http.request(method, self.url + path, **kwargs)
            body = yield response.content()
        except ConnectingCancelledError:
            raise CancelledError()
        except _UNREACHABLE as e:
            # A request cancelled in flight (Ctrl-C) fails as "never received"
            # with CancelledError as its reason: that is an interruption.
            if any(r.check(CancelledError) for r in getattr(e, "reasons", None) or []):
                raise CancelledError()
            raise Unreachable(self.url, _reason(e))
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict) or "ok" not in document:
            raise GatewayError(
                response.code,
                f"the answer to {method} {path} (HTTP {response.code}) is not the gateway's JSON; "
                f"is {self.url} an edgegw management API?",
                document,
            )
        if not document["ok"]:
            message = document.get("error") or f"HTTP {response.code}"
            raise GatewayError(response.code, message, document)
        return document.get("data")

    @inlineCallbacks
    def all_pages(self, path: str) -> Generator[Deferred[Any], Any, list[Any]]:
        """Every item of a paged list (``{items, page, pages}``), or the list itself."""
        items: list[Any] = []
        page = 1
        while True:
            data = yield self.call("GET", path, params={"page": page, "limit": PAGE_SIZE})
            if isinstance(data, list):
                return data
            items.extend(data.get("items") or [])
            if page >= (data.get("pages") or 1):
                return items
            page += 1

    @inlineCallbacks
    def find_endpoint(
        self, name: str, domain: str | None = None, required: bool = True
    ) -> Generator[Deferred[Any], Any, dict[str, Any] | None]:
        """
        The endpoint called ``name`` (narrowed by ``domain`` when several share
        the name), or one whose id is ``name``; None when there is none and
        ``required`` is false.
        """
        endpoints: list[dict[str, Any]] = yield self.all_pages("/api/endpoints")
        named = [e for e in endpoints if e.get("name") == name]
        if len(named) > 1 and domain is not None:
            named = [e for e in named if e.get("domain") == domain]
        if len(named) > 1:
            domains = ", ".join(sorted(str(e.get("domain")) for e in named))
            raise CommandError(
                f"several endpoints are named '{name}' (domains {domains}); pass --domain to pick one"
            )
        if named:
            return named[0]
        by_id = [e for e in endpoints if e.get("id") == name]
        if by_id:
            return by_id[0]
        if required:
            raise CommandError(f"no endpoint named '{name}'; `edgegw ls` lists them")
        return None


def _reason(exception: Exception) -> str:
    """A short human reason for a connection failure."""
    if isinstance(exception, (ResponseNeverReceived, ResponseFailed, RequestTransmissionFailed)):
        reasons = getattr(exception, "reasons", None) or []
        text = str(reasons[0].value).strip() if reasons else ""
        if text:
            return "the connection broke before an answer came: " + text
        return "the connection broke before an answer came"
    text = str(exception).strip()
    return text or type(exception).__name__


# --- configuration ----------------------------------------------------------


def find_key(flag: str | None, environ: Mapping[str, str], data_dir: str) -> str:
    """
    The API key: ``--key``, else ``$EDGEGW_KEY``, else ``<data-dir>/admin.key``
    (written by the gateway on its first start). Raises ``CommandError`` (exit 2)
    when none is found. Reads a small local file synchronously: this happens
    before the reactor runs.
    """
    if flag:
        return flag.strip()
    if environ.get("EDGEGW_KEY", "").strip():
        return environ["EDGEGW_KEY"].strip()
    path = os.path.join(data_dir, "admin.key")
    try:
        with open(path, encoding="utf-8") as f:
            key = f.read().strip()
    except FileNotFoundError:
        raise CommandError(
            f"no API key: pass --key, set EDGEGW_KEY, or point --data-dir (EDGEGW_DATA_DIR) "
            f"at the gateway's data directory ({path} does not exist)",
            USAGE,
        )
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"cannot read the API key from {path}: {_os_reason(e)}", USAGE)
    if not key:
        raise CommandError(f"no API key: {path} is empty; pass --key or set EDGEGW_KEY", USAGE)
    return key


def _os_reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _read_bytes(path: str) -> bytes:
    # Synchronous on purpose: the command's input is read before the reactor runs.
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CommandError(f"cannot read {path}: {_os_reason(e)}", USAGE)


def _read_text(path: str) -> str:
    data = _read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text", USAGE)


# --- arguments --------------------------------------------------------------


def _instances(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds above 0")
    return value


def _seconds_ago(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds, 0 or more")
    return value


def _method(text: str) -> str:
    method = text.upper()
    if method not in METHODS:
        raise argparse.ArgumentTypeError("must be one of " + ", ".join(METHODS))
    return method


def _route(text: str) -> dict[str, str]:
    """``--route "GET /notes/{id}"``: a method and a path, as one route of ``routes``."""
    method, _, path = text.strip().partition(" ")
    path = path.strip()
    if not path.startswith("/"):
        raise argparse.ArgumentTypeError('must be a method and a path, e.g. "GET /notes/{id}"')
    return {"method": _method(method), "path": path}


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, each command's ``--help`` ending with its example."""
    parser = _build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            _add_examples(action)
    return parser


# One example per command (and per action of the commands that have them),
# shown at the end of its ``--help``.
EXAMPLES: dict[str, str] = {
    "deploy": 'edgegw deploy hello.rs --path /hello --method GET\n  edgegw deploy notes.rs --route "GET /notes" --route "POST /notes" --route "GET /notes/{id}"',
    "ls": "edgegw ls --json | jq -r '.[] | select(.status == \"error\") | .name'",
    "nodes": "edgegw nodes",
    "logs": "edgegw logs hello --since 60 --follow",
    "import": "edgegw import petstore.zip --create-collection --compile --start",
    "keys": "edgegw keys create ci --scope read",
    "keys create": "edgegw keys create ci --scope read",
    "keys ls": "edgegw keys ls",
    "keys revoke": "edgegw keys revoke bcebe2e699264034971c493221842d35",
    "keys reset-admin": "edgegw keys reset-admin --data-dir ./var",
    "rm": "edgegw rm hello",
    "stop": "edgegw stop hello",
    "start": "edgegw start hello",
    "restart": "edgegw restart hello",
    "versions": "edgegw versions hello",
    "rollback": "edgegw rollback hello 3f9a2c1",
    "settings": "edgegw settings hello timeout=5 limits.memory_mb=256 env.TOKEN=s3cret",
    "services": "edgegw services create notes-db sqlite path=notes.sqlite3",
    "services ls": "edgegw services ls",
    "services create": "edgegw services create cache redis host=127.0.0.1 port=6379",
    "services test": "edgegw services test cache",
    "services rm": "edgegw services rm cache",
    "bind": "edgegw bind notes notes-db --pool main",
    "unbind": "edgegw unbind notes main",
    "domains": "edgegw domains create api.example.com",
    "domains ls": "edgegw domains ls",
    "domains create": "edgegw domains create api.example.com --description 'public API'",
    "domains rm": "edgegw domains rm api.example.com --cascade",
    "collections": "edgegw collections create shop --domain api.example.com --base-path /v1",
    "collections ls": "edgegw collections ls",
    "collections create": "edgegw collections create shop --domain api.example.com --base-path /v1",
    "collections rm": "edgegw collections rm shop",
    "consumers": "edgegw consumers create mobile && edgegw consumers key mobile",
    "consumers ls": "edgegw consumers ls --json",
    "consumers create": "edgegw consumers create mobile",
    "consumers rm": "edgegw consumers rm mobile",
    "consumers key": "edgegw consumers key mobile\n  edgegw consumers key mobile --delete 8c1f0e4b9d2a4f6e8a3b5c7d9e1f2a3b",
    "backup": "edgegw backup edgegw-backup.tar --data-dir /var/lib/edgegw",
    "restore": "edgegw restore edgegw-backup.tar --data-dir /var/lib/edgegw",
}


def _add_examples(commands: Any, prefix: str = "") -> None:
    """Put each command's example (EXAMPLES) at the end of its ``--help``."""
    for name, parser in commands.choices.items():
        example = EXAMPLES.get(prefix + name)
        if example is not None and not parser.epilog:
            parser.epilog = "example:\n  " + example
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_examples(action, prefix + name + " ")


def _build_parser() -> argparse.ArgumentParser:
    """The whole command line: the commands, their arguments and the connection options."""
    # The connection options are accepted before and after the command
    # (``edgegw --url U ls`` and ``edgegw ls --url U``); SUPPRESS keeps a
    # sub-command's parser from overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("gateway")
    group.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"management API address (env EDGEGW_URL, default {DEFAULT_URL})",
    )
    group.add_argument(
        "--key",
        default=argparse.SUPPRESS,
        help="API key (env EDGEGW_KEY, else <data-dir>/admin.key)",
    )
    group.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="the gateway's data directory, for admin.key "
        f"(env EDGEGW_DATA_DIR, default {DEFAULT_DATA_DIR})",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the gateway's answer as JSON (for scripts) instead of text",
    )

    parser = argparse.ArgumentParser(
        prog="edgegw",
        description="Deploy Rust handlers to an edgegw gateway and manage it.",
        epilog="examples:\n  edgegw deploy hello.rs --path /hello\n  edgegw ls\n"
        "  edgegw COMMAND --help      (each command's options and an example)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    deploy = commands.add_parser(
        "deploy",
        parents=[common],
        help="create or update an endpoint from a .rs file, compile and (re)start it",
        description="Create the endpoint (or update the one of that name), compile it and "
        "start it; a running endpoint is restarted so the new code serves.",
    )
    deploy.add_argument("file", metavar="FILE.rs", help="the handler's Rust source")
    deploy.add_argument("--path", help="route path, e.g. /users/{id} (needed to create, or --route)")
    deploy.add_argument("--method", type=_method, help="HTTP method (GET when creating)")
    deploy.add_argument(
        "--route",
        dest="routes",
        action="append",
        type=_route,
        metavar='"METHOD /PATH"',
        help="one route of an endpoint serving several (repeat it; instead of --path and --method): "
        'the whole set, e.g. --route "GET /notes" --route "POST /notes"',
    )
    deploy.add_argument("--name", help="endpoint name (default: the file name without .rs)")
    deploy.add_argument("--domain", help="host name to serve on (default *: any)")
    deploy.add_argument("--instances", type=_instances, help="worker processes")
    deploy.add_argument("--timeout", type=_positive_seconds, help="per-request timeout, seconds")

    commands.add_parser("ls", parents=[common], help="list endpoints")
    commands.add_parser("nodes", parents=[common], help="list the cluster's nodes (up or down, their workers)")

    logs = commands.add_parser("logs", parents=[common], help="print an endpoint's worker logs")
    logs.add_argument("name", metavar="NAME", help="endpoint name (or id)")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C"
    )
    logs.add_argument(
        "--since",
        type=_seconds_ago,
        metavar="SECONDS_AGO",
        help="only lines of the last SECONDS_AGO seconds",
    )
    logs.add_argument("--domain", help="pick among several endpoints of that name")

    from edgegw_tx.cli.manage import add_commands  # imports this module: here, not at the top

    add_commands(commands, common)

    imports = commands.add_parser(
        "import",
        parents=[common],
        help="import an OpenAPI spec (.yaml/.json) or a bundle (.zip)",
        description="A .zip is sent to /api/import/bundle as it is; any other file is read as "
        "text and sent to /api/import/openapi.",
    )
    imports.add_argument("file", metavar="SPEC_OR_ZIP")
    imports.add_argument("--domain", help="host name for the imported endpoints")
    imports.add_argument("--collection-id", help="put the endpoints in this collection")
    imports.add_argument(
        "--create-collection", action="store_true", help="make a collection from the spec's title"
    )
    imports.add_argument(
        "--compile", action="store_true", help="compile the handlers (bundles only)"
    )
    imports.add_argument("--start", action="store_true", help="start the handlers (bundles only)")

    keys = commands.add_parser("keys", parents=[common], help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = key_commands.add_parser(
        "create", parents=[common], help="create a key; its value is shown once"
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--scope",
        choices=("read", "admin"),
        default="read",
        help="read: GET calls only (default); admin: everything",
    )
    key_commands.add_parser("ls", parents=[common], help="list keys (never their values)")
    revoke = key_commands.add_parser("revoke", parents=[common], help="delete a key")
    revoke.add_argument("id", metavar="ID")
    reset = key_commands.add_parser(
        "reset-admin",
        parents=[common],
        help="lost admin.key: mint a new admin key from the store itself (no key needed)",
        description="Works on the store, not through the API (no key needed). With the data "
        "dir's SQLite store (the default): run it as the gateway's user (root) with the gateway "
        "stopped. With a cluster's PostgreSQL store (--store): nodes may run; they take the change "
        "within seconds. Writes a new admin key to <data-dir>/admin.key (mode 0600) and revokes "
        "every other admin key; read keys stay.",
    )
    reset.add_argument(
        "--store",
        metavar="URI",
        help="the store, as for twistd edgegw --store: sqlite:PATH or "
        "postgresql://user:password@host:port/database (default: <data-dir>/edgegw.sqlite3)",
    )
    from edgegw_tx.cli import backup  # imports this module: here, not at the top

    backup.add_parsers(commands, common)
    return parser


# --- commands -----------------------------------------------------------------
#
# Each command is ``prepare(options) -> work`` (synchronous: checks arguments,
# reads local files) and ``work(gateway, context) -> Deferred of exit code``.


class Context:
    """What a command's work reads besides the gateway: the clock, the console, the arguments."""

    def __init__(self, reactor: Any, console: Console, options: argparse.Namespace) -> None:
        self.reactor = reactor
        self.console = console
        self.options = options

    @property
    def json(self) -> bool:
        """``--json``: the command prints the gateway's answer as JSON instead of text."""
        return bool(getattr(self.options, "json", False))

    def emit(self, data: Any) -> None:
        """Print ``data`` as JSON on stdout (``--json``)."""
        self.console.out(json.dumps(data, indent=2, sort_keys=True))

    def report(self, data: Any, text: str) -> None:
        """What a command did: ``data`` as JSON with ``--json``, else ``text``."""
        if self.json:
            self.emit(data)
        else:
            self.console.out(text)


def _prepare_deploy(options: argparse.Namespace) -> Work:
    name = options.name or _stem(options.file)
    if not name.strip():
        raise CommandError("the endpoint name is empty; pass --name", USAGE)
    code = _read_text(options.file)
    return lambda gateway, context: _deploy(gateway, context, name, code)


def _stem(path: str) -> str:
    base = os.path.basename(path)
    return base[:-3] if base.endswith(".rs") else os.path.splitext(base)[0]


@inlineCallbacks
def _deploy(gateway: Gateway, context: Context, name: str, code: str) -> Generator[Deferred[Any], Any, int]:
    options = context.options
    fields: dict[str, Any] = {"code": code}
    if options.routes and (options.path is not None or options.method is not None):
        raise CommandError("give --route, or --path and --method, not both", USAGE)
    for field in ("path", "method", "routes", "domain", "instances", "timeout"):
        value = getattr(options, field)
        if value is not None:
            fields[field] = value
    existing = yield gateway.find_endpoint(name, domain=options.domain, required=False)
    if existing is None:
        if options.path is None and not options.routes:
            raise CommandError(
                f"there is no endpoint named '{name}' yet: pass --path (or --route) to create it", USAGE
            )
        if not options.routes:
            fields.setdefault("method", "GET")
        record = yield gateway.call("POST", "/api/endpoints", dict(fields, name=name))
    else:
        record = yield gateway.call("PUT", f"/api/endpoints/{existing['id']}", fields)
    endpoint_id = record["id"]
    try:
        compiled = yield gateway.call("POST", f"/api/endpoints/{endpoint_id}/compile")
    except GatewayError as e:
        if e.status != 422:
            raise
        if context.json:
            context.emit(e.document)
        _print_diagnostics(context.console, e.document, name, options.file)
        if existing is None:
            context.console.err(
                f"note: the endpoint '{name}' was created (status error): fix {options.file} and "
                f"deploy it again, or `edgegw rm {name}` removes it"
            )
        return FAILED
    _print_warnings(context.console, compiled.get("build") or {}, name, options.file)
    running = compiled.get("status") == "running" or bool(compiled.get("pids"))
    action = "restart" if running else "start"
    try:
        started = yield gateway.call("POST", f"/api/endpoints/{endpoint_id}/{action}")
    except GatewayError as e:
        if e.status != 502:
            raise
        # The workers died before they were ready: what they said is in the log.
        raise CommandError(f"{e.message}\nhint: `edgegw logs {name}` shows what the workers wrote")
    if context.json:
        context.emit(dict(started, build=compiled.get("build")))
    else:
        context.console.out(_deployed_line(context.console, started))
    return OK


def _deployed_line(console: Console, record: Mapping[str, Any]) -> str:
    where = "" if record.get("domain") in (None, "*") else f" on {record['domain']}"
    pids = ", ".join(str(p) for p in record.get("pids") or []) or "none"
    status = record.get("status")
    return (
        f"deployed {record.get('name')}: {', '.join(_routes_text(record))}{where} "
        f"({console.paint(str(status), STATUS_STYLES.get(str(status)))}, pids {pids})"
    )


def _routes_text(record: Mapping[str, Any]) -> list[str]:
    """``METHOD /path`` of each of the record's routes (a record of before: its one)."""
    routes = record.get("routes") or [{"method": record.get("method"), "path": record.get("path")}]
    return [f"{r.get('method')} {r.get('path')}" for r in routes]


def status_line(console: Console, record: Mapping[str, Any], note: str | None = None) -> str:
    """``name: status (pids ...)``, the one line a start, stop or rollback prints."""
    status = str(record.get("status"))
    pids = ", ".join(str(p) for p in record.get("pids") or [])
    text = f"{record.get('name')}: {console.paint(status, STATUS_STYLES.get(status))}"
    details = [d for d in (note, f"pids {pids}" if pids else None) if d]
    return text + (f" ({'; '.join(details)})" if details else "")


def _rendered(d: Mapping[str, Any], source: str) -> str:
    """A diagnostic as cargo prints it, its location naming the user's file."""
    text = str(d.get("rendered") or _plain_diagnostic(d))
    # The handler *is* src/main.rs of the gateway's cargo project: name the
    # user's file instead, so the location is one an editor can open.
    for arrow in ("--> ", "::: "):
        text = text.replace(f"{arrow}src/main.rs:", f"{arrow}{source}:")
    return text.rstrip("\n") + "\n"


def _print_diagnostics(console: Console, document: Any, name: str, source: str) -> None:
    """A compile failure as cargo shows it: each diagnostic's rendered text, then a summary."""
    diagnostics = (document or {}).get("diagnostics") or []
    for d in diagnostics:
        console.err(_rendered(d, source))
    errors = sum(1 for d in diagnostics if d.get("level") == "error")
    if errors:
        plural = "" if errors == 1 else "s"
        console.error(f"could not compile `{name}` due to {errors} previous error{plural}")
    else:
        console.error(str((document or {}).get("error") or "compilation failed"))


def _print_warnings(console: Console, build: Mapping[str, Any], name: str, source: str) -> None:
    """A successful compile's warnings, as cargo shows them, on stderr."""
    warnings = build.get("warnings") or []
    for d in warnings:
        console.err(_rendered(d, source))
    if warnings:
        plural = "" if len(warnings) == 1 else "s"
        console.warning(f"`{name}` compiled with {len(warnings)} warning{plural}")


def _plain_diagnostic(d: Mapping[str, Any]) -> str:
    text = f"{d.get('level') or 'error'}: {d.get('message') or ''}"
    if d.get("line"):
        text += f"\n --> line {d['line']}, column {d.get('column') or 1}"
    return text


def _prepare_ls(options: argparse.Namespace) -> Work:
    return _ls


@inlineCallbacks
def _ls(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    endpoints = yield gateway.all_pages("/api/endpoints")
    ordered = sorted(endpoints, key=lambda e: (str(e.get("name")), str(e.get("domain"))))
    if context.json:
        context.emit(ordered)
        return OK
    if not endpoints:
        context.console.out("no endpoints")
        return OK
    rows: list[Sequence[object]] = [("NAME", "ID", "METHOD", "PATH", "DOMAIN", "STATUS", "VERSION", "PIDS")]
    for e in ordered:
        pids = ",".join(str(p) for p in e.get("pids") or []) or "-"
        rows.append(
            (e.get("name"), e.get("id"), e.get("method"), e.get("path"), e.get("domain"),
             e.get("status"), e.get("version") or "-", pids)
        )
        # Its other routes, one line each under the first.
        for route in (e.get("routes") or [])[1:]:
            rows.append(("", "", route.get("method"), route.get("path"), "", "", "", ""))
    table(context.console, rows)
    return OK


def _prepare_nodes(options: argparse.Namespace) -> Work:
    return _nodes


@inlineCallbacks
def _nodes(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    """The nodes sharing the gateway's store, as GET /api/nodes lists them; the one answering marked."""
    nodes = yield gateway.all_pages("/api/nodes")
    if context.json:
        context.emit(nodes)
        return OK
    rows: list[Sequence[object]] = [("NAME", "ADDRESS", "VERSION", "STATE", "WORKERS", "LAST SEEN")]
    for n in nodes:
        name = f"{n.get('name')} (this node)" if n.get("self") else n.get("name")
        rows.append(
            (name, n.get("address") or "-", n.get("version") or "-", n.get("state"), n.get("workers"),
             n.get("last_seen") or "never")
        )
    table(context.console, rows)
    return OK


def table(console: Console, rows: Sequence[Sequence[object]]) -> None:
    """
    ``rows`` (the first the headings) in aligned columns; on a terminal the
    headings in bold and a STATUS or STATE column coloured by STATUS_STYLES.
    """
    cells = [[("" if cell is None else str(cell)) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    coloured = {i for i, heading in enumerate(cells[0]) if heading in ("STATUS", "STATE")}
    for number, row in enumerate(cells):
        line = []
        for i, (cell, width) in enumerate(zip(row, widths)):
            padded = cell.ljust(width) if i < len(row) - 1 else cell
            style = "bold" if number == 0 else STATUS_STYLES.get(cell) if i in coloured else None
            # Painted after padding: the escapes take no room in the column.
            line.append(console.paint(padded, style) if cell else padded)
        console.out("  ".join(line).rstrip())


def _prepare_logs(options: argparse.Namespace) -> Work:
    return _logs


@inlineCallbacks
def _logs(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    options = context.options
    endpoint = yield gateway.find_endpoint(options.name, domain=options.domain)
    path = f"/api/endpoints/{endpoint['id']}/logs"
    since = None if options.since is None else context.reactor.seconds() - options.since
    try:
        while True:
            params = None if since is None else {"since": repr(since)}
            data = yield gateway.call("GET", path, params=params)
            for entry in data.get("lines") or []:
                if context.json:
                    # One object a line (JSON Lines), so ``--follow --json`` streams.
                    context.console.out(json.dumps(entry, sort_keys=True))
                else:
                    text = f"{entry.get('timestamp')} {entry.get('stream')} {entry.get('line')}"
                    context.console.out(text)
                if entry.get("time") is not None:
                    since = entry["time"]
            if not options.follow:
                return OK
            yield deferLater(context.reactor, FOLLOW_INTERVAL, lambda: None)
    except CancelledError:
        # Ctrl-C: the way ``--follow`` is meant to end.
        if options.follow:
            return OK
        raise


def _prepare_import(options: argparse.Namespace) -> Work:
    if options.file.lower().endswith(".zip"):
        bundle = _read_bytes(options.file)
        return lambda gateway, context: _import_bundle(gateway, context, bundle)
    if options.compile or options.start:
        raise CommandError(
            "--compile and --start apply to bundles (.zip) only; "
            "an OpenAPI import makes stub handlers",
            USAGE,
        )
    spec = _read_text(options.file)
    return lambda gateway, context: _import_openapi(gateway, context, spec)


@inlineCallbacks
def _import_openapi(gateway: Gateway, context: Context, spec: str) -> Generator[Deferred[Any], Any, int]:
    options = context.options
    body: dict[str, Any] = {"spec": spec}
    if options.domain:
        body["domain"] = options.domain
    if options.collection_id:
        body["collection_id"] = options.collection_id
    if options.create_collection:
        body["create_collection"] = True
    data = yield gateway.call("POST", "/api/import/openapi", body)
    return _print_import(context.console, data)


@inlineCallbacks
def _import_bundle(gateway: Gateway, context: Context, bundle: bytes) -> Generator[Deferred[Any], Any, int]:
    options = context.options
    params: dict[str, str] = {}
    if options.domain:
        params["domain"] = options.domain
    if options.collection_id:
        params["collection_id"] = options.collection_id
    for flag in ("create_collection", "compile", "start"):
        if getattr(options, flag):
            params[flag] = "true"
    data = yield gateway.call(
        "POST", "/api/import/bundle", params=params, raw=bundle, content_type="application/zip"
    )
    return _print_import(context.console, data)


_FAILURE_LISTS = ("errors", "failed", "failures")


def _print_import(console: Console, data: Any) -> int:
    """
    The import's answer, readably: each list (created, updated, skipped, ...)
    as a heading with one line per item. Exit 1 when it lists failures.
    """
    if not isinstance(data, dict):
        console.out(json.dumps(data, indent=2))
        return OK
    _print_mapping(console, data, "")
    failed = any(isinstance(data.get(k), list) and data[k] for k in _FAILURE_LISTS)
    return FAILED if failed else OK


def _print_mapping(console: Console, mapping: Mapping[str, Any], indent: str) -> None:
    for key, value in mapping.items():
        label = str(key).replace("_", " ")
        if isinstance(value, list):
            if not value:
                console.out(f"{indent}{label}: none")
                continue
            console.out(f"{indent}{label} ({len(value)}):")
            for item in value:
                console.out(f"{indent}  {_describe(item)}")
        elif isinstance(value, dict):
            if _is_record(value):
                console.out(f"{indent}{label}: {_describe(value)}")
            else:
                console.out(f"{indent}{label}:")
                _print_mapping(console, value, indent + "  ")
        elif value is not None:
            console.out(f"{indent}{label}: {value}")


def _is_record(value: Mapping[str, Any]) -> bool:
    return any(k in value for k in ("name", "id", "operation_id", "operationId", "host"))


def _describe(item: Any) -> str:
    """One line for an item of an import answer: a record, or anything else as text."""
    if not isinstance(item, dict):
        return str(item)
    titles = ("name", "operation_id", "operationId", "host", "file", "id")
    title = next((str(item[k]) for k in titles if item.get(k)), "")
    route = " ".join(str(item[k]) for k in ("method", "path") if item.get(k))
    text = title
    if route:
        text = f"{text}: {route}" if text else route
    notes = [str(item[k]) for k in ("status",) if item.get(k)]
    for k in ("error", "reason", "message", "warning"):
        if item.get(k):
            notes.append(f"{k}: {item[k]}")
    if notes:
        text += " (" + "; ".join(notes) + ")"
    return text or json.dumps(item, sort_keys=True)


def _prepare_keys(options: argparse.Namespace) -> Work:
    return {
        "create": _keys_create,
        "ls": _keys_ls,
        "revoke": _keys_revoke,
    }[options.keys_command]


@inlineCallbacks
def _keys_create(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    options = context.options
    data = yield gateway.call("POST", "/api/keys", {"name": options.name, "scope": options.scope})
    key = data.get("key")
    if not key:
        raise CommandError("the gateway created the key but did not answer its value")
    # The value alone on stdout (KEY=$(edgegw keys create ci) captures just it);
    # what it is and the warning go to stderr.
    name, scope = data.get("name", options.name), data.get("scope", options.scope)
    context.console.err(f"created key '{name}' (id {data.get('id')}, scope {scope}):")
    context.console.out(key)
    context.console.warning(
        "this is the only time the key is shown; store it now, it cannot be read again"
    )
    return OK


@inlineCallbacks
def _keys_ls(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    keys = yield gateway.all_pages("/api/keys")
    if context.json:
        context.emit(keys)
        return OK
    if not keys:
        context.console.out("no keys")
        return OK
    rows: list[Sequence[object]] = [("ID", "NAME", "SCOPE", "CREATED", "LAST USED")]
    for k in keys:
        # ``current``: the key this command authenticated with.
        name = f"{k.get('name')} (this key)" if k.get("current") else k.get("name")
        last_used = k.get("last_used_at") or "never"
        rows.append((k.get("id"), name, k.get("scope"), k.get("created_at"), last_used))
    table(context.console, rows)
    return OK


@inlineCallbacks
def _keys_revoke(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    key_id = context.options.id
    yield gateway.call("DELETE", "/api/keys/" + quote(key_id, safe=""))
    context.console.out(f"revoked key {key_id}")
    return OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], Work]] = {
    "deploy": _prepare_deploy,
    "ls": _prepare_ls,
    "nodes": _prepare_nodes,
    "logs": _prepare_logs,
    "import": _prepare_import,
    "keys": _prepare_keys,
}


def _command(name: str) -> Callable[[argparse.Namespace], Work]:
    """The prepare function of command ``name``: this module's or cli/manage.py's."""
    from edgegw_tx.cli.manage import COMMANDS

    return _COMMANDS.get(name) or COMMANDS[name]


# --- running ------------------------------------------------------------------


def run(
    argv: Sequence[str],
    reactor: Any = None,
    http: Any = None,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> Deferred[int]:
    """
    Run one command line; fire with the exit code (this Deferred never fails).

    ``reactor`` gives the clock for ``--since`` and ``--follow`` and the
    shutdown trigger that turns Ctrl-C into a clean end; ``http`` is a
    treq-like client (``treq.client.HTTPClient``, or ``StubTreq`` in tests),
    by default one over ``Agent(reactor)``.
    """
    environ = os.environ if environ is None else environ
    console = Console(stdout, stderr, environ)
    debug = bool(environ.get("EDGEGW_DEBUG"))
    # argparse prints to sys.stdout/sys.stderr and exits; point it at the console.
    try:
        with contextlib.redirect_stdout(console.stdout), contextlib.redirect_stderr(console.stderr):
            options = build_parser().parse_args(argv)
    except SystemExit as e:
        return succeed(e.code if isinstance(e.code, int) else USAGE)

    try:
        url = getattr(options, "url", None) or environ.get("EDGEGW_URL") or DEFAULT_URL
        if not url.startswith(("http://", "https://")):
            raise CommandError(f"--url must start with http:// or https://, not {url!r}", USAGE)
        data_dir = (
            getattr(options, "data_dir", None) or environ.get("EDGEGW_DATA_DIR") or DEFAULT_DATA_DIR
        )
        if options.command == "keys" and options.keys_command == "reset-admin":
            # The one command that needs no key: it is how a lost one is replaced.
            return _reset_admin(data_dir, options.store, reactor, console)
        if options.command in ("backup", "restore"):
            # On the data directory's files, not through the API (cli/backup.py).
            from edgegw_tx.cli.backup import run_command

            return run_command(options, data_dir, reactor, console)
        key = find_key(getattr(options, "key", None), environ, data_dir)
        work = _command(options.command)(options)
    except CommandError as e:
        console.error(e.message)
        return succeed(e.code)

    if reactor is None:
        from twisted.internet import reactor
    if http is None:
        from treq.client import HTTPClient
        from twisted.web.client import Agent

        http = HTTPClient(Agent(reactor))

    gateway = Gateway(http, url, key)
    d = work(gateway, Context(reactor, console, options))

    def interrupted() -> None:
        if not d.called:
            d.cancel()

    if hasattr(reactor, "addSystemEventTrigger"):
        trigger = reactor.addSystemEventTrigger("before", "shutdown", interrupted)
        if trigger is not None:
            # A reactor that goes on running (a test's, a program's) keeps no trigger of ours.
            d.addBoth(_passing(lambda: reactor.removeSystemEventTrigger(trigger)))
    d.addErrback(_exit_code, console, debug)
    return d


def _passing(action: Callable[[], object]) -> Callable[[Any], Any]:
    """A callback that runs ``action`` and passes the result (or failure) on."""

    def callback(result: Any) -> Any:
        action()
        return result

    return callback


def _reset_admin(data_dir: str, store: str | None, reactor: Any, console: Console) -> Deferred[int]:
    """``keys reset-admin`` on the store itself (cli/reset_admin.py); fires with the exit code."""
    from edgegw_tx.cli.reset_admin import ResetRefused, reset_admin

    if reactor is None:
        from twisted.internet import reactor

    def refused(failure: Failure) -> int:
        failure.trap(ResetRefused)
        error = failure.value
        assert isinstance(error, ResetRefused), "trapped above"
        console.error(error.message)
        return USAGE if error.usage else FAILED

    d = reset_admin(data_dir, reactor, console.out, store).addCallbacks(lambda _: OK, refused)
    return d.addErrback(_exit_code, console, False)


def _exit_code(failure: Failure, console: Console, debug: bool) -> int:
    """The exit code of a failed command, told on the console."""
    error = failure.value
    if isinstance(error, CommandError):
        console.error(error.message)
        return error.code
    if failure.check(CancelledError):
        console.err("interrupted")
        return INTERRUPTED
    if failure.check(BrokenPipeError):
        # Output piped into something that stopped reading (``| head``).
        return BROKEN_PIPE
    try:
        if debug:
            console.err(failure.getTraceback())
        name = type(error).__name__
        console.error(f"unexpected {name}: {failure.value} (EDGEGW_DEBUG=1 shows where)")
    except OSError:
        pass
    return FAILED


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``argv`` (default ``sys.argv[1:]``) under ``react`` and exit with its code."""
    from twisted.internet.task import react

    argv = sys.argv[1:] if argv is None else argv

    def start(reactor: Any) -> Deferred[None]:
        return run(argv, reactor).addCallback(_exit)

    react(start)


def _exit(code: int) -> None:
    if code == BROKEN_PIPE:
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    if code:
        raise SystemExit(code)
    return None
