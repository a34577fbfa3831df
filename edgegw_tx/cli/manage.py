"""
The commands that manage what is deployed (docs/cli.md): an endpoint's life
(``rm``, ``stop``, ``start``, ``restart``), its versions (``versions``,
``rollback``), its ``settings``, the ``services`` and their bindings
(``bind``, ``unbind``), ``domains``, ``collections`` and ``consumers``
(the clients of ``api_key`` policies, and their keys).

Each is ``prepare(options) -> work`` like those of ``commands.py``, which
registers them (``add_commands``, ``COMMANDS``) and runs them. Every record
is named the way ``edgegw ls`` shows it: by name (an endpoint's, a
service's, a collection's, a consumer's), host (a domain's) or id.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred, inlineCallbacks

from edgegw_tx.cli.commands import (
    OK,
    USAGE,
    CommandError,
    Context,
    Gateway,
    Work,
    status_line,
    table,
)

POOL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVICE_TYPES = ("sqlite", "postgres", "redis", "storage")
# Settings whose value is an object the gateway replaces whole on a PUT:
# ``settings NAME env.KEY=V`` sends the stored object with that one change.
_WHOLE_OBJECTS = ("env", "dependencies", "limits")


# --- arguments ------------------------------------------------------------------


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add this module's commands to the ``edgegw`` sub-command table ``commands``."""

    def endpoint_command(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, parents=[common], help=help)
        parser.add_argument("name", metavar="NAME", help="endpoint name (or id)")
        parser.add_argument("--domain", help="pick among several endpoints of that name")
        return parser

    rm = commands.add_parser(
        "rm", parents=[common], help="delete endpoints (stops their workers first)"
    )
    rm.add_argument("names", metavar="NAME", nargs="+", help="endpoint name (or id)")
    rm.add_argument("--domain", help="pick among several endpoints of that name")
    endpoint_command("stop", "drain and stop an endpoint's workers")
    endpoint_command("start", "start a compiled endpoint's workers")
    endpoint_command("restart", "new workers on the latest compiled code, then drain the old")

    versions = endpoint_command("versions", "list an endpoint's compiled versions, newest first")
    versions.add_argument(
        "--code", metavar="VERSION", help="print the source of that version instead"
    )
    rollback = endpoint_command("rollback", "serve an earlier version again, without compiling")
    rollback.add_argument("version", metavar="VERSION", help="its digest, or 7+ first hex digits")

    settings = endpoint_command("settings", "show or change an endpoint's settings")
    settings.add_argument(
        "assignments",
        metavar="KEY[=VALUE]",
        nargs="*",
        help="KEY shows one setting; KEY=VALUE changes it (dotted for nested: limits.memory_mb=256, env.TOKEN=x)",
    )
    settings.add_argument(
        "--unset", metavar="KEY", action="append", default=[], help="drop env.KEY or dependencies.KEY"
    )

    services = commands.add_parser("services", parents=[common], help="manage services (databases, stores)")
    actions = services.add_subparsers(dest="services_command", metavar="ACTION", required=True)
    actions.add_parser("ls", parents=[common], help="list services (secrets masked)")
    create = actions.add_parser("create", parents=[common], help="create a service")
    create.add_argument("name", metavar="NAME")
    create.add_argument("type", metavar="TYPE", choices=SERVICE_TYPES, help=" | ".join(SERVICE_TYPES))
    create.add_argument("config", metavar="KEY=VALUE", nargs="*", help="config fields, e.g. host=db port=5432")
    test = actions.add_parser("test", parents=[common], help="connect and run a trivial operation")
    test.add_argument("name", metavar="NAME", help="service name (or id)")
    remove = actions.add_parser("rm", parents=[common], help="delete a service (refused while bound)")
    remove.add_argument("name", metavar="NAME", help="service name (or id)")

    bind = endpoint_command("bind", "give an endpoint a service under a pool id")
    bind.add_argument("service", metavar="SERVICE", help="service name (or id)")
    bind.add_argument("--pool", metavar="POOL_ID", help="the name the handler uses (default: the service's name)")
    unbind = endpoint_command("unbind", "remove an endpoint's binding")
    unbind.add_argument("pool", metavar="POOL_ID")

    domains = commands.add_parser("domains", parents=[common], help="manage domains (host names)")
    actions = domains.add_subparsers(dest="domains_command", metavar="ACTION", required=True)
    actions.add_parser("ls", parents=[common], help="list domains")
    create = actions.add_parser("create", parents=[common], help="create a domain")
    create.add_argument("host", metavar="HOST")
    create.add_argument("--description", default=None)
    remove = actions.add_parser("rm", parents=[common], help="delete a domain")
    remove.add_argument("host", metavar="HOST", help="its host (or id)")
    remove.add_argument(
        "--cascade", action="store_true", help="delete its collections and endpoints too"
    )

    collections = commands.add_parser("collections", parents=[common], help="manage collections")
    actions = collections.add_subparsers(dest="collections_command", metavar="ACTION", required=True)
    actions.add_parser("ls", parents=[common], help="list collections")
    create = actions.add_parser("create", parents=[common], help="create a collection")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--domain", metavar="HOST", help="serve its endpoints on this domain")
    create.add_argument("--base-path", metavar="PATH", help="prefix of its endpoints' paths, e.g. /v1")
    create.add_argument("--description", default=None)
    remove = actions.add_parser("rm", parents=[common], help="delete a collection")
    remove.add_argument("name", metavar="NAME", help="its name (or id)")
    remove.add_argument("--cascade", action="store_true", help="delete its endpoints too")

    consumers = commands.add_parser("consumers", parents=[common], help="manage consumers (api_key policies' clients)")
    actions = consumers.add_subparsers(dest="consumers_command", metavar="ACTION", required=True)
    actions.add_parser("ls", parents=[common], help="list consumers and their keys' ids (never the keys)")
    create = actions.add_parser("create", parents=[common], help="create a consumer (no key yet)")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--disabled", action="store_true", help="its keys are refused until it is enabled")
    remove = actions.add_parser("rm", parents=[common], help="delete a consumer and its keys")
    remove.add_argument("name", metavar="NAME", help="its name (or id)")
    key = actions.add_parser("key", parents=[common], help="make a key of a consumer (shown once), or delete one")
    key.add_argument("name", metavar="NAME", help="its name (or id)")
    key.add_argument("--delete", metavar="KEY_ID", help="delete this key (its id, from `consumers ls`) instead")


def parse_value(text: str) -> Any:
    """
    A VALUE of ``KEY=VALUE``: a number, ``true``, ``false``, ``null`` or JSON
    starting with ``[``, ``{`` or ``"`` is that; anything else is the text.
    """
    stripped = text.strip()
    if stripped in ("true", "false", "null") or stripped[:1] in ("[", "{", '"'):
        try:
            return json.loads(stripped)
        except ValueError:
            raise CommandError(f"not valid JSON: {text!r}", USAGE)
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        value = float(stripped)
    except ValueError:
        return text
    return value if value == value and value not in (float("inf"), float("-inf")) else text


def _assignments(items: Sequence[str], string_under: Sequence[str] = ()) -> list[tuple[str, Any]]:
    """``KEY=VALUE`` items as (key, value); values under ``string_under`` keys stay text."""
    pairs = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"expected KEY=VALUE, not {item!r}", USAGE)
        key = key.strip()
        whole = key.split(".", 1)[0] in string_under and "." in key
        pairs.append((key, text if whole else parse_value(text)))
    return pairs


# --- finding records ------------------------------------------------------------


@inlineCallbacks
def find_record(
    gateway: Gateway, path: str, field: str, value: str, kind: str, listing: str
) -> Generator[Deferred[Any], Any, dict[str, Any]]:
    """The one record of ``path``'s list whose ``field`` (or else ``id``) is ``value``."""
    records: list[dict[str, Any]] = yield gateway.all_pages(path)
    named = [r for r in records if str(r.get(field, "")).lower() == value.lower()]
    if len(named) > 1:
        ids = ", ".join(str(r.get("id")) for r in named)
        raise CommandError(f"several {kind}s are called '{value}' (ids {ids}); give the id")
    if named:
        return named[0]
    by_id = [r for r in records if r.get("id") == value]
    if by_id:
        return by_id[0]
    raise CommandError(f"no {kind} called '{value}'; `{listing}` lists them")


def _endpoint(gateway: Gateway, context: Context) -> Deferred[Any]:
    return gateway.find_endpoint(context.options.name, domain=context.options.domain)


def _quoted(value: str) -> str:
    return quote(value, safe="")


# --- endpoints ------------------------------------------------------------------


@inlineCallbacks
def _rm(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    """Delete each endpoint named; stops at the first refusal, saying what was done."""
    answers = []
    for name in context.options.names:
        endpoint = yield gateway.find_endpoint(name, domain=context.options.domain)
        answer = yield gateway.call("DELETE", "/api/endpoints/" + _quoted(endpoint["id"]))
        answers.append(dict(answer, name=endpoint.get("name")))
        if not context.json:
            context.console.out(f"removed {endpoint.get('name')} (id {endpoint['id']})")
    if context.json:
        context.emit(answers)
    return OK


def _lifecycle(action: str) -> Callable[[Gateway, Context], Deferred[int]]:
    @inlineCallbacks
    def work(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
        endpoint = yield _endpoint(gateway, context)
        record = yield gateway.call("POST", f"/api/endpoints/{_quoted(endpoint['id'])}/{action}")
        context.report(record, status_line(context.console, record))
        return OK

    return work


@inlineCallbacks
def _versions(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    endpoint = yield _endpoint(gateway, context)
    versions: list[dict[str, Any]] = yield gateway.all_pages(
        f"/api/endpoints/{_quoted(endpoint['id'])}/versions"
    )
    wanted = context.options.code
    if wanted is not None:
        matches = [v for v in versions if str(v.get("digest", "")).startswith(wanted.lower())]
        if len(matches) != 1:
            problem = "no version" if not matches else f"{len(matches)} versions"
            raise CommandError(f"{problem} of '{endpoint.get('name')}' start with '{wanted}'")
        if context.json:
            context.emit(matches[0])
        else:
            context.console.stdout.write(str(matches[0].get("code") or ""))
            context.console.stdout.flush()
        return OK
    if context.json:
        context.emit(versions)
        return OK
    if not versions:
        context.console.out(f"{endpoint.get('name')} has no compiled version yet")
        return OK
    rows: list[Sequence[object]] = [("VERSION", "CREATED", "COMPILE", "LIVE", "CURRENT", "BINARY")]
    for v in versions:
        seconds = v.get("compile_seconds")
        rows.append(
            (
                v.get("short") or str(v.get("digest", ""))[:12],
                v.get("created_at"),
                "-" if seconds is None else f"{seconds:.2f}s",
                "live" if v.get("live") else "",
                "current" if v.get("current") else "",
                "stored" if v.get("available") else "pruned",
            )
        )
    table(context.console, rows)
    return OK


@inlineCallbacks
def _rollback(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    endpoint = yield _endpoint(gateway, context)
    record = yield gateway.call(
        "POST",
        f"/api/endpoints/{_quoted(endpoint['id'])}/rollback",
        {"version": context.options.version},
    )
    if context.json:
        context.emit(record)
    else:
        context.console.out(
            status_line(context.console, record, f"serving version {record.get('version')}")
        )
    return OK


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A settings object as (dotted key, value) pairs, sorted."""
    if isinstance(value, dict) and (value or not prefix):
        pairs = []
        for key in sorted(value):
            pairs.extend(_flatten(value[key], f"{prefix}{key}."))
        return pairs
    return [(prefix[:-1], value)]


def _prepare_settings(options: argparse.Namespace) -> Work:
    reads = [a for a in options.assignments if "=" not in a]
    writes = [a for a in options.assignments if "=" in a]
    if reads and (writes or options.unset):
        raise CommandError("show settings or change them, not both in one command", USAGE)
    changes = _assignments(writes, string_under=("env",))
    for key in options.unset:
        if key.split(".", 1)[0] not in ("env", "dependencies") or "." not in key:
            raise CommandError(f"--unset takes env.KEY or dependencies.KEY, not {key!r}", USAGE)
    if changes or options.unset:
        return lambda gateway, context: _settings_set(gateway, context, changes)
    return lambda gateway, context: _settings_show(gateway, context, reads)


@inlineCallbacks
def _settings_show(
    gateway: Gateway, context: Context, keys: Sequence[str]
) -> Generator[Deferred[Any], Any, int]:
    endpoint = yield _endpoint(gateway, context)
    flat = dict(_flatten(endpoint.get("settings") or {}))
    if keys:
        missing = [k for k in keys if k not in flat]
        if missing:
            raise CommandError(
                f"'{endpoint.get('name')}' has no setting {', '.join(missing)}; "
                f"`edgegw settings {context.options.name}` lists them"
            )
        flat = {k: flat[k] for k in keys}
    if context.json:
        context.emit(endpoint.get("settings") if not keys else flat)
        return OK
    for key, value in flat.items():
        context.console.out(f"{key} = {json.dumps(value)}")
    return OK


@inlineCallbacks
def _settings_set(
    gateway: Gateway, context: Context, changes: Sequence[tuple[str, Any]]
) -> Generator[Deferred[Any], Any, int]:
    endpoint = yield _endpoint(gateway, context)
    current = endpoint.get("settings") or {}
    body: dict[str, Any] = {}
    for key, value in changes:
        top, _, rest = key.partition(".")
        if not rest:
            body[top] = value
            continue
        if top not in _WHOLE_OBJECTS:
            raise CommandError(f"'{top}' has no parts to set; write {top}=VALUE", USAGE)
        whole = body.setdefault(top, dict(current.get(top) or {}))
        whole[rest] = value
    for key in context.options.unset:
        top, _, rest = key.partition(".")
        whole = body.setdefault(top, dict(current.get(top) or {}))
        if rest not in whole:
            raise CommandError(f"'{endpoint.get('name')}' has no setting {key}")
        del whole[rest]
    record = yield gateway.call(
        "PUT", f"/api/endpoints/{_quoted(endpoint['id'])}", {"settings": body}
    )
    if context.json:
        context.emit(record.get("settings"))
        return OK
    after = dict(_flatten(record.get("settings") or {}))
    before = dict(_flatten(current))
    changed = [k for k in sorted(set(after) | set(before)) if after.get(k, _GONE) != before.get(k, _GONE)]
    for key in changed:
        shown = json.dumps(after[key]) if key in after else "(unset)"
        context.console.out(f"{key} = {shown}")
    if not changed:
        context.console.out(f"{endpoint.get('name')}: no setting changed")
    return OK


_GONE = object()


# --- services -------------------------------------------------------------------


def _service(gateway: Gateway, name: str) -> Deferred[Any]:
    return find_record(gateway, "/api/services", "name", name, "service", "edgegw services ls")


def _prepare_services(options: argparse.Namespace) -> Work:
    action = options.services_command
    if action == "create":
        config = dict(_assignments(options.config))
        return lambda gateway, context: _services_create(gateway, context, config)
    return {"ls": _services_ls, "test": _services_test, "rm": _services_rm}[action]


def _service_detail(service: Mapping[str, Any]) -> str:
    config = service.get("config") or {}
    if config.get("host"):
        where = f"{config['host']}:{config.get('port') or ''}".rstrip(":")
        return f"{where}/{config['database']}" if config.get("database") not in (None, "") else where
    if config.get("bucket"):
        return f"s3 bucket {config['bucket']}"
    return str(config.get("path") or "")


@inlineCallbacks
def _services_ls(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    services: list[dict[str, Any]] = yield gateway.all_pages("/api/services")
    if context.json:
        context.emit(services)
        return OK
    if not services:
        context.console.out("no services")
        return OK
    rows: list[Sequence[object]] = [("ID", "NAME", "TYPE", "WHERE")]
    for s in sorted(services, key=lambda s: str(s.get("name"))):
        rows.append((s.get("id"), s.get("name"), s.get("service_type"), _service_detail(s)))
    table(context.console, rows)
    return OK


@inlineCallbacks
def _services_create(
    gateway: Gateway, context: Context, config: dict[str, Any]
) -> Generator[Deferred[Any], Any, int]:
    options = context.options
    body = {"name": options.name, "service_type": options.type, "config": config}
    record = yield gateway.call("POST", "/api/services", body)
    if context.json:
        context.emit(record)
    else:
        context.console.out(
            f"created {record.get('service_type')} service {record.get('name')} (id {record.get('id')})"
        )
    return OK


@inlineCallbacks
def _services_test(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    service = yield _service(gateway, context.options.name)
    answer = yield gateway.call("POST", f"/api/services/{_quoted(service['id'])}/test")
    if context.json:
        context.emit(answer)
    else:
        ok = context.console.paint("ok", "green")
        context.console.out(f"{service.get('name')}: {ok} ({answer.get('latency_ms')} ms)")
    return OK


@inlineCallbacks
def _services_rm(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    service = yield _service(gateway, context.options.name)
    answer = yield gateway.call("DELETE", "/api/services/" + _quoted(service["id"]))
    context.report(answer, f"removed service {service.get('name')} (id {service['id']})")
    return OK


# --- bindings -------------------------------------------------------------------


@inlineCallbacks
def _bind(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    endpoint = yield _endpoint(gateway, context)
    service = yield _service(gateway, context.options.service)
    pool = context.options.pool or str(service.get("name"))
    if not POOL_ID.match(pool):
        raise CommandError(
            f"'{pool}' cannot be a pool id (1-64 of A-Z a-z 0-9 _ -); pass --pool", USAGE
        )
    answer = yield gateway.call(
        "POST",
        f"/api/endpoints/{_quoted(endpoint['id'])}/services",
        {"service_id": service["id"], "pool_id": pool},
    )
    if context.json:
        context.emit(answer)
        return OK
    line = f"bound {service.get('name')} to {endpoint.get('name')} as '{pool}'"
    if answer.get("replaced"):
        line += f" (it named service {answer['replaced']} before)"
    context.console.out(line)
    return OK


@inlineCallbacks
def _unbind(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    endpoint = yield _endpoint(gateway, context)
    pool = context.options.pool
    answer = yield gateway.call(
        "DELETE", f"/api/endpoints/{_quoted(endpoint['id'])}/services/{_quoted(pool)}"
    )
    context.report(answer, f"unbound '{pool}' from {endpoint.get('name')}")
    return OK


# --- domains and collections ----------------------------------------------------


def _prepare_domains(options: argparse.Namespace) -> Work:
    return {"ls": _domains_ls, "create": _domains_create, "rm": _domains_rm}[options.domains_command]


@inlineCallbacks
def _domains_ls(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    domains: list[dict[str, Any]] = yield gateway.all_pages("/api/domains")
    if context.json:
        context.emit(domains)
        return OK
    if not domains:
        context.console.out("no domains")
        return OK
    rows: list[Sequence[object]] = [("ID", "HOST", "DESCRIPTION")]
    for d in sorted(domains, key=lambda d: str(d.get("host"))):
        rows.append((d.get("id"), d.get("host"), d.get("description") or ""))
    table(context.console, rows)
    return OK


@inlineCallbacks
def _domains_create(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    body: dict[str, Any] = {"host": context.options.host}
    if context.options.description is not None:
        body["description"] = context.options.description
    record = yield gateway.call("POST", "/api/domains", body)
    context.report(record, f"created domain {record.get('host')} (id {record.get('id')})")
    return OK


@inlineCallbacks
def _domains_rm(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    domain = yield find_record(
        gateway, "/api/domains", "host", context.options.host, "domain", "edgegw domains ls"
    )
    answer = yield _delete(gateway, "/api/domains/" + _quoted(domain["id"]), context.options.cascade)
    context.report(answer, f"removed domain {domain.get('host')}{_cascaded(answer)}")
    return OK


def _delete(gateway: Gateway, path: str, cascade: bool) -> Deferred[Any]:
    return gateway.call("DELETE", path, params={"cascade": "true"} if cascade else None)


def _cascaded(answer: Mapping[str, Any]) -> str:
    cascaded = answer.get("cascaded") or {}
    parts = [f"{n} {what[:-1] if n == 1 else what}" for what, n in cascaded.items() if n]
    return f" with {' and '.join(parts)}" if parts else ""


def _prepare_collections(options: argparse.Namespace) -> Work:
    return {
        "ls": _collections_ls,
        "create": _collections_create,
        "rm": _collections_rm,
    }[options.collections_command]


@inlineCallbacks
def _collections_ls(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    collections: list[dict[str, Any]] = yield gateway.all_pages("/api/collections")
    if context.json:
        context.emit(collections)
        return OK
    if not collections:
        context.console.out("no collections")
        return OK
    domains: list[dict[str, Any]] = yield gateway.all_pages("/api/domains")
    hosts = {d.get("id"): d.get("host") for d in domains}
    rows: list[Sequence[object]] = [("ID", "NAME", "DOMAIN", "BASE PATH")]
    for c in sorted(collections, key=lambda c: str(c.get("name"))):
        host = hosts.get(c.get("domain_id"), c.get("domain_id")) if c.get("domain_id") else "-"
        rows.append((c.get("id"), c.get("name"), host, c.get("base_path") or "-"))
    table(context.console, rows)
    return OK


@inlineCallbacks
def _collections_create(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    options = context.options
    body: dict[str, Any] = {"name": options.name}
    if options.domain:
        domain = yield find_record(
            gateway, "/api/domains", "host", options.domain, "domain", "edgegw domains ls"
        )
        body["domain_id"] = domain["id"]
    if options.base_path is not None:
        body["base_path"] = options.base_path
    if options.description is not None:
        body["description"] = options.description
    record = yield gateway.call("POST", "/api/collections", body)
    context.report(record, f"created collection {record.get('name')} (id {record.get('id')})")
    return OK


@inlineCallbacks
def _collections_rm(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    collection = yield find_record(
        gateway, "/api/collections", "name", context.options.name, "collection", "edgegw collections ls"
    )
    path = "/api/collections/" + _quoted(collection["id"])
    answer = yield _delete(gateway, path, context.options.cascade)
    context.report(answer, f"removed collection {collection.get('name')}{_cascaded(answer)}")
    return OK


# --- consumers ------------------------------------------------------------------


def _prepare_consumers(options: argparse.Namespace) -> Work:
    return {
        "ls": _consumers_ls,
        "create": _consumers_create,
        "rm": _consumers_rm,
        "key": _consumers_key,
    }[options.consumers_command]


def _consumer(gateway: Gateway, name: str) -> Deferred[Any]:
    return find_record(gateway, "/api/consumers", "name", name, "consumer", "edgegw consumers ls")


@inlineCallbacks
def _consumers_ls(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    consumers: list[dict[str, Any]] = yield gateway.all_pages("/api/consumers")
    if context.json:
        context.emit(consumers)
        return OK
    if not consumers:
        context.console.out("no consumers")
        return OK
    rows: list[Sequence[object]] = [("ID", "NAME", "ENABLED", "KEYS")]
    for c in sorted(consumers, key=lambda c: str(c.get("name")).lower()):
        keys = ", ".join(str(k.get("id")) for k in c.get("keys") or ()) or "-"
        rows.append((c.get("id"), c.get("name"), "yes" if c.get("enabled") else "no", keys))
    table(context.console, rows)
    return OK


@inlineCallbacks
def _consumers_create(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    body: dict[str, Any] = {"name": context.options.name}
    if context.options.disabled:
        body["enabled"] = False
    record = yield gateway.call("POST", "/api/consumers", body)
    context.report(record, f"created consumer {record.get('name')} (id {record.get('id')})")
    return OK


@inlineCallbacks
def _consumers_rm(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    consumer = yield _consumer(gateway, context.options.name)
    answer = yield gateway.call("DELETE", "/api/consumers/" + _quoted(consumer["id"]))
    context.report(answer, f"removed consumer {consumer.get('name')} and its keys")
    return OK


@inlineCallbacks
def _consumers_key(gateway: Gateway, context: Context) -> Generator[Deferred[Any], Any, int]:
    consumer = yield _consumer(gateway, context.options.name)
    path = "/api/consumers/" + _quoted(consumer["id"]) + "/keys"
    if context.options.delete:
        answer = yield gateway.call("DELETE", path + "/" + _quoted(context.options.delete))
        context.report(answer, f"deleted key {context.options.delete} of consumer {consumer.get('name')}")
        return OK
    data = yield gateway.call("POST", path)
    if context.json:
        context.emit(data)
        return OK
    # The key alone on stdout (KEY=$(edgegw consumers key mobile) captures just it), as ``keys create``.
    context.console.err(f"created a key of consumer '{consumer.get('name')}' (id {data.get('id')}):")
    context.console.out(str(data.get("key")))
    context.console.warning("this is the only time the key is shown; store it now, it cannot be read again")
    return OK


def _ready(work: Callable[[Gateway, Context], Deferred[int]]) -> Callable[[argparse.Namespace], Work]:
    """A command with nothing to check before it runs."""
    return lambda options: work


COMMANDS: dict[str, Callable[[argparse.Namespace], Work]] = {
    "rm": _ready(_rm),
    "stop": _ready(_lifecycle("stop")),
    "start": _ready(_lifecycle("start")),
    "restart": _ready(_lifecycle("restart")),
    "versions": _ready(_versions),
    "rollback": _ready(_rollback),
    "settings": _prepare_settings,
    "services": _prepare_services,
    "bind": _ready(_bind),
    "unbind": _ready(_unbind),
    "domains": _prepare_domains,
    "collections": _prepare_collections,
    "consumers": _prepare_consumers,
}
