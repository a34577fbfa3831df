"""
The JSON Schema of every request and response body of the management API.

This module is data: each limit, pattern and default of a body is written here
once. From it come the server's checks (``admin/validation.py`` runs these
schemas with ``jsonschema`` and keeps only what a schema cannot say: path
pattern parsing, ``min_instances <= max_instances``, references to other
records), the OpenAPI document (``admin/openapi.py`` adds the operations), the
field tables of ``docs/api.md`` (``tools/gen-api-docs``) and the Admin UI's
input limits (read from ``/api/openapi.json``).

Patterns are written in the syntax common to ECMA-262 and Python (no ``\\Z``,
no look-behind), anchored with ``^`` and ``$``; ``$`` also matches before a
final newline in Python, so a pattern that must refuse one says so with
``(?!\\n)`` or a class that excludes it. ``x-error`` on a schema is the words a
400 uses when a value does not match it (``field 'x' <x-error>``).
"""

import functools
import re
from collections.abc import Iterable
from typing import Any

from edgegw_tx.build.project import MAX_DEPENDENCIES, MAX_FEATURES, SDK_CRATE
from edgegw_tx.paths import METHODS
from edgegw_tx.policy import model as _policy
from edgegw_tx.policy.limits import MAX_TIMEOUT as MAX_TIMEOUT
from edgegw_tx.services import config as _service_config
from edgegw_tx.workers import isolation as _isolation
from edgegw_tx.workers import network as _network

Schema = dict[str, Any]

# -- limits: each written once ------------------------------------------------------

MAX_NAME = 200
"""An endpoint's or a collection's name, in characters."""
MAX_DESCRIPTION = 10_000
MAX_CODE = 1_000_000
"""A handler's Rust source, in characters (also an imported bundle's .rs file)."""
MAX_PATH = 2000
MAX_METHOD = 20
MAX_ROUTES = 32
"""The routes one endpoint may serve (``routes``)."""
MAX_HOST = 253
MAX_KEY_NAME = 100

# ``limits`` are each worker process's resource limits (docs/isolation.md):
# address space, CPU seconds over its life, open files, processes of the worker
# user, size of a file it writes; 0 leaves the gateway's own limit.
DEFAULT_LIMITS = {
    "memory_mb": 1024,
    "cpu_seconds": 3600,
    "open_files": 256,
    "processes": 1024,
    "file_size_mb": 64,
}
# limit -> (lowest, highest) when not 0
LIMIT_RANGES = {
    "memory_mb": (16, 1_048_576),
    "cpu_seconds": (1, 31_536_000),
    "open_files": (16, 1_048_576),
    "processes": (1, 4_194_304),
    "file_size_mb": (1, 1_048_576),
}
# The worker pool's settings (docs/api.md, "Endpoint fields"): ``min_instances``
# workers are kept alive (0: none until a request comes), up to
# ``max_instances`` under load; ``max_queue`` requests may wait for a worker
# (beyond: 503 with Retry-After); a worker is replaced after ``max_requests``
# requests (0: never); a worker above ``min_instances`` idle for
# ``idle_timeout`` seconds stops. ``instances: N`` is accepted on input as
# shorthand for min_instances = max_instances = N.
DEFAULT_SETTINGS: dict[str, Any] = {
    "min_instances": 1,
    "max_instances": 4,
    "max_queue": 1000,
    "timeout": 30.0,
    "max_requests": 0,
    "idle_timeout": 60.0,
    "env": {},
    "pipeline": 16,
    # ``concurrency``: most requests in flight on one worker whose handler
    # serves many at once (async handlers, docs/sdk/async.md).
    "concurrency": 64,
    "limits": DEFAULT_LIMITS,
    # ``network``: the workers' network policy (docs/isolation.md, "Network
    # policy"); its rule is ``edgegw_tx.workers.network.check_policy``.
    "network": _network.DEFAULT_POLICY,
    # ``dependencies``: crate name -> version requirement or {version,
    # features, default-features} (docs/dependencies.md).
    "dependencies": {},
}
MAX_INSTANCES = 64
MAX_QUEUE = 100_000
MAX_REQUESTS = 1_000_000_000
MAX_IDLE_TIMEOUT = 86_400.0
MAX_PIPELINE = 256
MAX_CONCURRENCY = 1024
# MAX_TIMEOUT (seconds per request) is the policy's ``limits.timeout`` ceiling too: written in policy/limits.py.

# An endpoint record's fields that GET returns and a PUT of it ignores.
ENDPOINT_READ_ONLY = (
    "artifact",
    "created_at",
    "deployed",
    "effective_policy",
    "id",
    "last_error",
    "nodes",
    "pids",
    "policy_sources",
    "queue",
    "revision",
    "route",
    "services",
    "status",
    "traffic",
    "updated_at",
    "version",
    "workers",
)

# A test request (``POST /api/test-request``, admin/probe.py).
PROBE_MAX_BODY = 1024 * 1024
"""Characters of a test request's body."""
PROBE_MAX_RESPONSE_BODY = 1024 * 1024
"""Bytes of the data plane's answer kept in a test request's answer."""
PROBE_MAX_HEADERS = 50
PROBE_MAX_HEADER_VALUE = 8192
PROBE_MAX_HEADER_NAME = 256
PROBE_MAX_PATH = 8192
PROBE_DEFAULT_TIMEOUT = 30.0
PROBE_MAX_TIMEOUT = 120.0
# The request target: visible ASCII, from "/", no "#" (a fragment is never sent).
PROBE_PATH_PATTERN = r'^/[!"$-~]*$'
PROBE_HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
# Tab, visible ASCII and Latin-1 (what a header value can carry), no line breaks.
PROBE_HEADER_VALUE_PATTERN = "^[\\t\\x20-\\x7e\\x80-\\xff]*$"

# -- patterns -----------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = rf"{_LABEL}(\.{_LABEL})*"
"""A host name in any letter case, unanchored; ``MAX_HOST`` bounds its length."""
HOST_PATTERN = rf"^\s*(\*|{HOST_NAME})\s*$"
"""A routing host as sent: ``*`` or a host name, with white space around (stripped)."""
MAX_SERVICE_NAME = 64
SERVICE_NAME = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_SERVICE_NAME - 1}}}$"
"""A service's name."""
MAX_POOL_ID = 64
POOL_ID = rf"^[A-Za-z0-9_-]{{1,{MAX_POOL_ID}}}$"
"""A binding's name, as the handler asks for its service."""


@functools.lru_cache(maxsize=None)
def ecma_regex(pattern: str) -> "re.Pattern[str]":
    """
    A pattern of this module compiled as ECMA-262 reads it (what JSON Schema
    says patterns are): a ``$`` outside a class ends the text, where Python's
    would also match before a final newline (``"A\\n"`` must not pass for ``"A"``).
    """
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


# The service plane's config rules: ``services.config.FIELDS`` is their one source.
SERVICE_TYPES = _service_config.SERVICE_TYPES
SSL_MODES = _service_config.SSL_MODES
MAX_POOL_SIZE = _service_config.MAX_POOL_SIZE
MASK = _service_config.MASK

ENDPOINT_STATUSES = ("created", "compiled", "running", "stopped", "error")
KEY_SCOPES = ("read", "admin")


# -- schema building blocks -----------------------------------------------------


def keywords(schema: dict[str, Any]) -> dict[str, Any]:
    """Schema keywords that are not Python names (``not``, ``x-error``), to spread into a builder's."""
    return schema



def ref(name: str) -> Schema:
    """A reference to the named schema of the document."""
    return {"$ref": "#/components/schemas/" + name}


def string(
    max_length: int | None = None, pattern: str | None = None, min_length: int | None = None, **extra: Any
) -> Schema:
    """A string, with the limits given."""
    schema: Schema = {"type": "string"}
    if min_length is not None:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    if pattern is not None:
        schema["pattern"] = pattern
    schema.update(extra)
    return schema


def integer(minimum: int | None = None, maximum: int | None = None, **extra: Any) -> Schema:
    """An integer, in the range given."""
    schema: Schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    schema.update(extra)
    return schema


BOOLEAN = {"type": "boolean"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (3.1 spells it as a type list)."""
    schema = dict(schema)
    schema["type"] = [schema["type"], "null"]
    if "enum" in schema:
        schema["enum"] = schema["enum"] + [None]
    return schema


def obj(properties: dict[str, Schema], required: Iterable[str] = (), closed: bool = True, **extra: Any) -> Schema:
    """An object of ``properties``; ``closed``: any other field is refused."""
    schema: Schema = {"type": "object", "properties": properties}
    required = list(required)
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def record(properties: dict[str, Schema]) -> Schema:
    """An answered record: every property present, no other."""
    return obj(properties, required=tuple(properties))


def map_of(values: Schema, keys: Schema | None = None, **extra: Any) -> Schema:
    """An object used as a map: any keys (of ``keys``), values of ``values``."""
    schema: Schema = {"type": "object", "additionalProperties": values}
    if keys is not None:
        schema["propertyNames"] = keys
    schema.update(extra)
    return schema


def array(items: Schema, **extra: Any) -> Schema:
    """A list of ``items``."""
    return dict({"type": "array", "items": items}, **extra)


def any_case(word: str) -> str:
    """A regex matching ``word`` in any letter case (JSON Schema regexes have no flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


TIMESTAMP = string(format="date-time", description="ISO 8601, UTC")
ID = string(description="a record id")
ANY = {"description": "a read-only field: accepted and ignored"}
READ_ONLY = {"id": ANY, "created_at": ANY, "updated_at": ANY, "revision": ANY}
REVISION = integer(
    0,
    description="the revision of its last change, cluster-wide; GET answers it as the ETag "
    '(`"<revision>"`) that a PUT or DELETE sends as If-Match',
)


def revised(properties: dict[str, Schema], required: bool = True) -> Schema:
    """An answered record of ``properties`` plus its ``revision`` (``required``: always there)."""
    return obj(dict(properties, revision=REVISION), required=tuple(properties) + (("revision",) if required else ()))
DESCRIPTION = string(MAX_DESCRIPTION)


def policy_input(level: str) -> Schema:
    """The ``policy`` a body may carry on a ``level`` (policy/model.py composes it), or null: none."""
    return nullable(_policy.policy_schema(level))


def policy_output(level: str) -> Schema:
    """
    A record's ``policy`` as answered: the parts set, secrets masked (so a
    masked secret need not fit its input rules); docs/policies.md has each part.
    """
    parts = _policy.policy_schema(level)["properties"]
    return obj(
        {name: {"type": "object", "description": f"the {name} part (docs/policies.md)"} for name in parts},
        description=f"the {level}'s own traffic policy, secrets masked; {{}}: none",
    )

# Not blank: the server strips a name and refuses what is left empty.
NOT_BLANK = r"\S"
_NO_CONTROL = r"[^\x00-\x1f\x7f]"

# An endpoint's name ends up in logs, bundles and file names: stripped of the
# white space around it, not blank, no path separator, no control character
# (NUL included), not ``.`` or ``..``.
NAME = string(
    MAX_NAME,
    allOf=[
        {"pattern": NOT_BLANK, "x-error": "must not be empty"},
        {
            "pattern": r"^\s*[^/\\\x00-\x1f\x7f]*\s*$",
            "x-error": "must not contain '/', '\\' or control characters",
        },
        {"not": {"pattern": r"^\s*\.\.?\s*$"}, "x-error": "must not be '.' or '..'"},
    ],
)

HOST = string(
    MAX_HOST,
    HOST_PATTERN,
    description="a host name (any case, stored lower-case), or * for any host",
    **keywords({"x-error": "must be '*' or a host name such as api.example.com"}),
)

METHOD_PATTERN = "^(" + "|".join(any_case(m) for m in sorted(METHODS)) + ")$"

# The grammar of ``paths.parse_pattern``, less what a regex cannot say (a
# parameter name used twice, percent-escapes that are not UTF-8: a 400 too).
_LITERAL = r"([A-Za-z0-9\-._~!$&'()*+,;=:@]|[^\x00-\x7f]|%[0-9A-Fa-f]{2})+"
_PARAM = r"\{[A-Za-z_][A-Za-z0-9_]*\}"
_SEGMENTS = rf"(/({_LITERAL}|{_PARAM}))+"
PATH_PATTERN = rf"^(/|{_SEGMENTS})$"
BASE_PATH_PATTERN = rf"^({_SEGMENTS})?$"

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"



# -- endpoints -------------------------------------------------------------------

_SDK_CRATE_ANY = "".join("[-_]" if c in "-_" else any_case(c) for c in SDK_CRATE)
CRATE_NAME = string(
    pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
    **keywords({"not": {"pattern": f"^{_SDK_CRATE_ANY}$"}}),
)
# A cargo version requirement: at most 64 of these characters, one a digit or ``*``.
VERSION_REQ = string(
    64,
    r"^[A-Za-z.^~=<>, +-]*[0-9*][0-9A-Za-z.*^~=<>, +-]*$",
    description='a cargo version requirement such as "1.2", "=0.4.23" or "^1"',
)
DEPENDENCY = {
    "oneOf": [
        VERSION_REQ,
        obj(
            {
                "version": VERSION_REQ,
                "features": array(string(pattern=r"^[A-Za-z0-9_+./-]{1,64}$"), maxItems=MAX_FEATURES),
                "default-features": BOOLEAN,
            },
            required=["version"],
        ),
    ]
}


def seconds(maximum: float, description: str) -> Schema:
    """A number of seconds above 0, at most ``maximum``."""
    return {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": maximum,
        "description": description,
        "x-error": f"must be a number of seconds above 0 and at most {maximum:g}",
    }


def limit(key: str, what: str) -> Schema:
    """One of ``settings.limits``: 0 or an integer in its range."""
    low, high = LIMIT_RANGES[key]
    return {
        "type": "integer",
        "anyOf": [{"const": 0}, {"minimum": low, "maximum": high}],
        "description": f"{what}; 0: the gateway's own limit (default {DEFAULT_LIMITS[key]})",
        "x-error": f"must be 0 (the gateway's own limit) or an integer from {low} to {high}",
    }


def settings_properties(output: bool = False) -> dict[str, Schema]:
    """
    The endpoint settings, accepted under ``settings`` and at the top level;
    ``instances`` is input only (shorthand for min_instances = max_instances).
    """
    shorthand = {} if output else {
        "instances": integer(
            1, MAX_INSTANCES, description="shorthand: min_instances = max_instances = this (overrides both)"
        )
    }
    return {
        **shorthand,
        "min_instances": integer(
            0, MAX_INSTANCES, description="workers kept alive; 0: none until a request comes (default 1)"
        ),
        "max_instances": integer(
            1,
            MAX_INSTANCES,
            description="most workers under load, at least min_instances (default 4, or min_instances if higher)",
        ),
        "max_queue": integer(0, MAX_QUEUE, description="requests that may wait for a worker; beyond, 503 (default 1000)"),
        "max_requests": integer(
            0,
            MAX_REQUESTS,
            description="requests a worker serves before it is replaced; 0: no limit (default)",
            **keywords({"x-error": f"must be 0 (no limit) or an integer from 1 to {MAX_REQUESTS}"}),
        ),
        "idle_timeout": seconds(
            MAX_IDLE_TIMEOUT, "seconds a worker above min_instances may idle before it stops (default 60)"
        ),
        "timeout": seconds(MAX_TIMEOUT, "seconds per request"),
        "env": map_of(
            {"type": "string"},
            keys={"pattern": ENV_NAME, "x-error": "must map variable names (letters, digits, _) to strings"},
            description="the workers' whole environment",
            **keywords({"x-error": "must map variable names (letters, digits, _) to strings"}),
        ),
        "pipeline": integer(1, MAX_PIPELINE, description="requests written to one worker ahead"),
        "concurrency": integer(
            1,
            MAX_CONCURRENCY,
            description="most requests in flight on one worker of an async handler, served at once (default 64)",
        ),
        "limits": obj(
            {
                "memory_mb": limit("memory_mb", "address space of a worker process, MiB"),
                "cpu_seconds": limit("cpu_seconds", "CPU seconds over a worker process's life"),
                "open_files": limit("open_files", "open file descriptors per worker process"),
                "processes": limit("processes", "processes and threads of the worker user (docs/isolation.md)"),
                "file_size_mb": limit("file_size_mb", "largest file a worker process may write, MiB"),
            },
            required=tuple(DEFAULT_LIMITS) if output else (),
            description="resource limits of each worker process (docs/isolation.md); on input, the limits given replace those stored",
            **keywords({"x-error": "must be an object of limits: " + ", ".join(DEFAULT_LIMITS)}),
        ),
        "network": {
            "oneOf": [
                string(enum=list(_network.POLICIES)),
                array(
                    string(_network.MAX_ENTRY, _network.ALLOW_ENTRY_PATTERN, title="host:port"),
                    minItems=1,
                    maxItems=_network.MAX_ALLOWED,
                ),
            ],
            "default": _network.DEFAULT_POLICY,
            "description": (
                'the workers\' network (docs/isolation.md): "none" (a loopback of their own), "outbound"'
                ' (the internet, not the host nor private ranges) or a list of "host:port" (only those;'
                " a name is resolved when the workers start, an IPv6 address in [])"
            ),
        },
        "dependencies": map_of(
            DEPENDENCY,
            keys=CRATE_NAME,
            maxProperties=MAX_DEPENDENCIES,
            description="extra crates (docs/dependencies.md)",
        ),
    }


WORKER = obj(
    {
        "pid": nullable(integer(1)),
        "version": nullable(string(description="the digest the worker runs")),
        "state": string(description="starting, ready, busy or draining"),
        "served": integer(0),
        "in_flight": integer(0),
        "process": integer(1, description="with --processes N: the data-plane process (1..N) running it"),
    },
    required=("pid", "version", "state", "served", "in_flight"),
    closed=False,
)

VERSION = record(
    {
        "endpoint_id": ID,
        "digest": string(pattern="^[0-9a-f]{64}$"),
        "short": string(description="the digest's first 12 hex digits"),
        "code": string(),
        "dependencies": map_of(DEPENDENCY, description="settings.dependencies of the build"),
        "compile_seconds": {"type": "number", "minimum": 0},
        "created_at": TIMESTAMP,
        "live": dict(BOOLEAN, description="the deployed version (what runs, or last ran)"),
        "current": dict(BOOLEAN, description="the build of the current code (`artifact`)"),
        "available": dict(BOOLEAN, description="its binary is still stored (a rollback can use it)"),
    }
)

ROLLBACK_INPUT = obj(
    {
        "version": string(
            64,
            "^[0-9A-Fa-f]{7,64}$",
            description="a version's digest, or its first 7 or more hex digits",
            **keywords(
                {
                    "x-error": "must be a version's digest (7 to 64 hex digits; "
                    "GET /api/endpoints/{id}/versions lists them)"
                }
            ),
        )
    },
    required=("version",),
)


def endpoint_route() -> Schema:
    """One route of an endpoint: a method and a path pattern (under its collection's base path)."""
    return obj(
        {
            "method": string(
                MAX_METHOD,
                METHOD_PATTERN,
                description="any letter case",
                **keywords({"x-error": "must be one of " + ", ".join(sorted(METHODS)) + " (any letter case)"}),
            ),
            "path": string(
                MAX_PATH,
                PATH_PATTERN,
                description="a path pattern such as /users/{id}",
                **keywords(
                    {
                        "x-error": "must be a path pattern such as /users/{id}: '/' and segments of URL "
                        "characters, percent-escapes or {name} parameters, none empty"
                    }
                ),
            ),
        },
        required=("method", "path"),
    )


def endpoint_input(create: bool) -> Schema:
    """
    An endpoint as created (name, and ``routes`` or ``method`` and ``path``,
    required) or changed.  ``method``/``path`` are the one-route form of
    ``routes``: given with ``routes`` they must be its first route.
    """
    route = endpoint_route()["properties"]
    properties = {
        "name": NAME,
        "path": dict(route["path"], description="the one-route form: the path of the first route"),
        "method": dict(route["method"], description="the one-route form: the method of the first route"),
        "routes": array(
            endpoint_route(),
            minItems=1,
            maxItems=MAX_ROUTES,
            description=f"the routes the endpoint serves, 1 to {MAX_ROUTES}, all by its one handler",
        ),
        "domain": dict(
            HOST, description="* (the default) or the host of a domain record (400 otherwise)"
        ),
        "collection_id": nullable(string(description="a collection's id (400 when there is none)")),
        "description": DESCRIPTION,
        "code": string(MAX_CODE, description="the handler's Rust source"),
        "enabled": BOOLEAN,
        "settings": obj(settings_properties()),
        "policy": policy_input("endpoint"),
    }
    properties.update(settings_properties())
    properties.update({name: ANY for name in ENDPOINT_READ_ONLY})
    if not create:
        return obj(properties)
    # Its routes in one form or the other (the first named when both are missing).
    return obj(properties, required=("name",), anyOf=[{"required": ["method", "path"]}, {"required": ["routes"]}])


def endpoint_properties() -> dict[str, Schema]:
    """The fields of an endpoint record as answered."""
    return {
        "id": ID,
        "name": string(),
        "path": string(description="the path of its first route"),
        "method": string(enum=sorted(METHODS), description="the method of its first route"),
        "routes": array(
            obj({"method": string(enum=sorted(METHODS)), "path": string()}, required=("method", "path")),
            description="every route it serves, in order (the first is method and path)",
        ),
        "domain": string(description="the host it is served on (its collection's, if that has one)"),
        "collection_id": nullable(string()),
        "description": string(),
        "code": string(),
        "enabled": BOOLEAN,
        "settings": obj(settings_properties(output=True), required=tuple(DEFAULT_SETTINGS)),
        "status": string(enum=list(ENDPOINT_STATUSES)),
        "artifact": nullable(string(description="digest of the compiled binary")),
        "deployed": nullable(string(description="digest the workers run, or last ran")),
        "last_error": nullable(string()),
        "pids": array(integer(1)),
        "services": map_of(ID, description="bindings: {pool_id: service_id}"),
        "route": string(description="what the data plane matches for its first route: method, host and full path"),
        "version": nullable(string(description="the live version: the first 12 hex digits of its digest")),
        "workers": array(WORKER, description="the running workers, with those still draining after a switch"),
        "queue": integer(0, description="requests waiting for a worker"),
        "traffic": array(
            obj(
                {
                    "version": string(description="the version: the first 12 hex digits of its digest"),
                    "weight": integer(0, description="its percentage of the requests"),
                    "served": integer(0, description="requests it was given since the split was placed"),
                },
                required=("version", "weight", "served"),
            ),
            description="the versions a traffic_split serves the endpoint by (docs/policies.md); [] when not split",
        ),
        "policy": policy_output("endpoint"),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }


# What an endpoint's answer has beside its record's fields: its revision, and
# in a gateway that knows its nodes, its workers on each.
ENDPOINT_EXTRA = {
    "revision": REVISION,
    "effective_policy": dict(
        policy_output("endpoint"),
        description="GET of one endpoint: the policy its requests get, each part from the endpoint, "
        "else its collection, else its domain; secrets masked",
    ),
    "policy_sources": map_of(
        string(enum=list(_policy.LEVELS)),
        description='GET of one endpoint: where each part of effective_policy came from, e.g. {"cors": "collection"}',
    ),
    "nodes": map_of(
        integer(0),
        description="in a cluster, the workers each node that is up runs for it: {node name: workers}",
    ),
}


def endpoint_record(properties: dict[str, Schema]) -> Schema:
    """An endpoint as answered: every field of ``properties``, ``revision``, and maybe ``nodes``."""
    return obj(dict(properties, **ENDPOINT_EXTRA), required=tuple(properties) + ("revision",))


BUILD = record(
    {
        "digest": string(),
        "cached": BOOLEAN,
        "seconds": {"type": "number", "minimum": 0},
        "dependencies": array(string()),
        "warnings": array(ref("Diagnostic"), description="cargo's warnings about the handler's code"),
    }
)

DIAGNOSTIC = obj(
    {
        "level": string(),
        "message": string(),
        "line": nullable(integer()),
        "column": nullable(integer()),
        "rendered": nullable(string()),
    },
    required=("level", "message"),
    closed=False,
)

LOG_LINE = record(
    {
        "time": {"type": "number", "description": "epoch seconds"},
        "timestamp": TIMESTAMP,
        "stream": string(),
        "line": string(),
        "trace_id": nullable(
            string(
                pattern="^[0-9a-f]{32}$",
                description="the W3C trace id of the request the worker was serving when it wrote the line (docs/sdk/request.md)",
            )
        ),
    }
)


# -- domains, collections, stats ------------------------------------------------

DOMAIN = revised(
    {
        "id": ID,
        "host": string(),
        "description": string(),
        "policy": policy_output("domain"),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
)


def domain_input(create: bool) -> Schema:
    """A domain as created (``host`` required) or changed."""
    properties = dict({"host": HOST, "description": DESCRIPTION, "policy": policy_input("domain")}, **READ_ONLY)
    return obj(properties, required=("host",) if create else ())


COLLECTION = revised(
    {
        "id": ID,
        "name": string(),
        "domain_id": nullable(ID),
        "base_path": string(),
        "description": string(),
        "policy": policy_output("collection"),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
)


def collection_input(create: bool) -> Schema:
    """A collection as created (``name`` required) or changed."""
    properties = {
        "name": string(MAX_NAME, NOT_BLANK),
        "domain_id": nullable(string(description="a domain's id (400 when there is none)")),
        "base_path": string(
            pattern=BASE_PATH_PATTERN,
            description="'' or a path prefix such as /v1 or /shops/{shop}, no trailing /",
            **keywords({"x-error": "must be '' (none) or a path prefix such as /v1 or /shops/{shop}, without a trailing '/'"}),
        ),
        "description": DESCRIPTION,
        "policy": policy_input("collection"),
    }
    properties.update(READ_ONLY)
    return obj(properties, required=("name",) if create else ())


DOMAIN_CREATE = domain_input(create=True)
DOMAIN_UPDATE = domain_input(create=False)
COLLECTION_CREATE = collection_input(create=True)
COLLECTION_UPDATE = collection_input(create=False)


COUNTS = record({"endpoints": integer(0), "collections": integer(0)})

CASCADE_DELETED = record({"id": ID, "deleted": {"const": True}, "cascaded": COUNTS})

#: A time in milliseconds (GET /api/stats).
_MS: Schema = {"type": "number", "minimum": 0}

STATS = record(
    {
        "endpoints": record(
            {
                "total": integer(0),
                "by_status": obj(
                    {s: integer(0) for s in ENDPOINT_STATUSES}, required=ENDPOINT_STATUSES
                ),
            }
        ),
        "requests": record(
            {
                "served": integer(0, description="every data-plane answer, the gateway's own (404, 503, ...) included"),
                "failed": integer(0, description="those answered with a 5xx status"),
                "rejected": integer(
                    0, description="refused by a running pool, queue full or stopping (in served and failed too)"
                ),
                "mean_ms": nullable(dict(_MS, description="mean time to answer; null before any")),
                "p50_ms": nullable(dict(_MS, description="median time to answer, estimated from the histogram")),
                "by_endpoint": array(
                    record(
                        {
                            "endpoint": string(description="the endpoint's name; empty for the gateway's own answers"),
                            "id": nullable(string(description="the endpoint's id; null for \"\" or an unknown name")),
                            "served": integer(0),
                            "failed": integer(0),
                            "mean_ms": nullable(_MS),
                            "p50_ms": nullable(_MS),
                        }
                    ),
                    description="the same per endpoint name (the endpoint label of /metrics); adds up to the totals",
                ),
            }
        ),
        "workers": integer(0),
        "uptime_seconds": {"type": "number", "minimum": 0},
        "version": string(),
    }
)


# -- stats history and test requests (admin/history.py, admin/probe.py) ----------

_COUNTS = array(integer(0))
_MEASURES = array({"type": ["number", "null"], "minimum": 0})
HISTORY_SERIES = {
    "requests": _COUNTS,
    "failed": _COUNTS,
    "rate": _MEASURES,
    "mean_ms": _MEASURES,
    "p50_ms": _MEASURES,
}
# An endpoint's values are null where it was not running.
_ENDPOINT_SERIES = {name: array({"type": ["number", "null"], "minimum": 0}) for name in HISTORY_SERIES}
STATS_HISTORY = record(
    {
        "interval": {"type": "number", "exclusiveMinimum": 0, "description": "seconds between samples"},
        "window": {"type": "number", "exclusiveMinimum": 0, "description": "seconds of history kept"},
        "times": array({"type": "number"}, description="epoch seconds of each sample, oldest first"),
        "total": record(HISTORY_SERIES),
        "endpoints": array(
            record(dict({"id": ID, "name": nullable(string()), "window_requests": integer(0)}, **_ENDPOINT_SERIES))
        ),
    }
)

TEST_REQUEST_INPUT = obj(
    {
        "method": string(enum=sorted(METHODS), default="GET"),
        "path": string(
            PROBE_MAX_PATH,
            PROBE_PATH_PATTERN,
            description="the request target: path and query, visible ASCII (percent-encode the rest), no fragment",
            **keywords(
                {
                    "x-error": "must start with / and hold only visible ASCII characters (no '#');"
                    f" percent-encode others; at most {PROBE_MAX_PATH} characters"
                }
            ),
        ),
        "headers": map_of(
            string(PROBE_MAX_HEADER_VALUE, PROBE_HEADER_VALUE_PATTERN),
            keys=string(PROBE_MAX_HEADER_NAME, PROBE_HEADER_NAME_PATTERN),
            maxProperties=PROBE_MAX_HEADERS,
            description="header fields; Host picks the domain; Content-Length, Transfer-Encoding, "
            "Connection and the other hop-by-hop fields are set by the gateway and ignored",
            **keywords(
                {
                    "x-error": f"must map at most {PROBE_MAX_HEADERS} HTTP field names to values of at most "
                    f"{PROBE_MAX_HEADER_VALUE} Latin-1 characters without line breaks"
                }
            ),
        ),
        "body": string(PROBE_MAX_BODY, description="sent as UTF-8"),
        "timeout": dict(
            seconds(PROBE_MAX_TIMEOUT, "seconds; beyond: 504"), default=PROBE_DEFAULT_TIMEOUT
        ),
    },
    required=("path",),
)
TEST_REQUEST_ANSWER = record(
    {
        "status": integer(100, 599),
        "reason": string(),
        "headers": array(array(string(), minItems=2, maxItems=2), description="[name, value] pairs, in order"),
        "body": string(description="the body as text, or base64 (body_encoding)"),
        "body_encoding": string(enum=["utf-8", "base64"]),
        "body_bytes": integer(0),
        "truncated": dict(BOOLEAN, description=f"only the first {PROBE_MAX_RESPONSE_BODY} bytes are in body"),
        "elapsed_ms": {"type": "number", "minimum": 0},
        "url": string(),
    }
)


# -- services and bindings ------------------------------------------------------

_SERVICE_HOST = string(_service_config.MAX_HOST, _service_config.HOST_PATTERN)
_TEXT = string(min_length=1, pattern=rf"^{_NO_CONTROL}*$")
_OPTIONAL_TEXT = nullable(string(pattern=rf"^{_NO_CONTROL}*$"))
# ``services.config.check_relative_path``: relative (no leading ``/`` or
# ``~``), no backslash or control character, no empty, ``.`` or ``..``
# segment, segments of at most MAX_SEGMENT_BYTES UTF-8 bytes. A regex cannot
# count bytes: the pattern bounds a segment's characters by that number, and
# the server refuses a longer one in bytes (a rule only Python says).
_SEGMENT_BYTES = _service_config.MAX_SEGMENT_BYTES
_SEGMENT = rf"(?!\.\.?(/|$))[^/\\\x00-\x1f\x7f]{{1,{_SEGMENT_BYTES}}}"
RELATIVE_PATH = string(
    _service_config.MAX_PATH,
    rf"^(?!~){_SEGMENT}(/{_SEGMENT})*$",
    description=f"relative to <data-dir>/services/; segments of at most {_SEGMENT_BYTES} bytes (UTF-8)",
    **keywords(
        {
            "x-error": "must be a relative path: '/'-separated segments of 1 to "
            f"{_SEGMENT_BYTES} bytes, none '.' or '..', no backslash or control character, not starting with '~'"
        }
    ),
)
SECRET = nullable(string(pattern=rf"^{_NO_CONTROL}*$", description=f'"{MASK}" in answers'))
# The S3 storage fields' patterns (``services.config``'s, the same words in x-error).
_S3_STRINGS = {
    "endpoint": nullable(
        string(
            _service_config.MAX_ENDPOINT,
            _service_config.ENDPOINT_PATTERN,
            **keywords({"x-error": _service_config.PATTERN_WORDS["endpoint"]}),
        )
    ),
    "bucket": string(63, _service_config.BUCKET_PATTERN, **keywords({"x-error": _service_config.PATTERN_WORDS["bucket"]})),
    "region": string(63, _service_config.REGION_PATTERN, **keywords({"x-error": _service_config.PATTERN_WORDS["region"]})),
}


def service_field(field: _service_config.Field, output: bool) -> Schema:
    """The schema of one config field (``services.config.Field``), as answered or as sent."""
    if field.kind == "host":
        return _SERVICE_HOST
    if field.kind == "text":
        return _TEXT
    if field.kind == "optional_text":
        return _OPTIONAL_TEXT
    if field.kind == "secret":
        return SECRET
    if field.kind == "integer":
        return integer(field.low, field.high)
    if field.kind == "boolean":
        return BOOLEAN
    if field.kind == "path":
        return RELATIVE_PATH
    if field.kind in _S3_STRINGS:
        return _S3_STRINGS[field.kind]
    # A choice; as sent, "" is its default.
    return string(enum=list(field.choices) + ([] if output else [""]))


def _any_of_other_backend(field_schema: Schema) -> Schema:
    """A storage backend's field: its schema, or null (what it is under the other backend)."""
    return field_schema if "null" in field_schema["type"] else nullable(field_schema)


def service_fields(service_type: str) -> dict[str, _service_config.Field]:
    """The config fields of ``service_type`` (``services.config.FIELDS``), for the docs' tables."""
    return _service_config.FIELDS[service_type]


def service_config(service_type: str, output: bool) -> Schema:
    """The ``config`` of ``service_type``: as sent (``output`` False) or as answered."""
    table = _service_config.FIELDS[service_type]
    fields = {name: service_field(field, output) for name, field in table.items()}
    # A field of one storage backend is null under the other.
    for name, field in table.items():
        if field.backend:
            fields[name] = _any_of_other_backend(fields[name])
    if output:
        return record(fields)
    # As sent, null is as good as absent: the default, or "is required".
    required = tuple(name for name, field in table.items() if field.required and not field.backend)
    fields = {k: (v if k in required or "null" in v["type"] else nullable(v)) for k, v in fields.items()}
    rules = _backend_rules(table) + _together_rules(service_type)
    schema = obj(fields, required=required)
    if rules:
        schema["allOf"] = rules
    return schema


def _backend_rules(table: dict[str, _service_config.Field]) -> list[Schema]:
    """
    For each storage ``backend``: its required fields are given, and the other
    backends' fields say nothing (null, ``""``, a choice's default), as
    ``validate_config`` checks.
    """
    backend = table.get("backend")
    if backend is None or not any(field.backend for field in table.values()):
        return []
    rules = []
    for choice in backend.choices:
        if choice == backend.default:
            chosen: Schema = {"properties": {"backend": {"enum": [choice, "", None]}}}
        else:
            chosen = {"properties": {"backend": {"const": choice}}, "required": ["backend"]}
        own = [name for name, field in table.items() if field.backend == choice and field.required]
        quiet = {
            name: {"enum": [None, ""] + ([field.default] if field.kind == "choice" else [])}
            for name, field in table.items()
            if field.backend and field.backend != choice
        }
        then: Schema = {"properties": dict(quiet, **{name: {"not": {"type": "null"}} for name in own})}
        if own:
            then["required"] = own
        rules.append({"if": chosen, "then": then})
    return rules


def _together_rules(service_type: str) -> list[Schema]:
    """``services.config.TOGETHER``: all of the fields set (non-empty), or none."""
    together = _service_config.TOGETHER.get(service_type)
    if not together:
        return []
    every = {"properties": {name: {"type": "string", "minLength": 1} for name in together}, "required": list(together)}
    none = {"properties": {name: {"enum": [None, ""]} for name in together}}
    return [{"anyOf": [every, none]}]


SERVICE_CONFIG_INPUT = {t: service_config(t, output=False) for t in SERVICE_TYPES}
"""Each type's ``config`` as sent: what the server checks a body's config against."""

SERVICE_NAME_INPUT = string(
    MAX_SERVICE_NAME,
    SERVICE_NAME,
    min_length=1,
    **keywords(
        {
            "x-error": f"must be 1 to {MAX_SERVICE_NAME} letters, digits, '_', '-' or '.',"
            " starting with a letter or digit"
        }
    ),
)


def service_input(create: bool) -> Schema:
    """
    A service body's fields but ``config``'s own (the server checks it next,
    against ``SERVICE_CONFIG_INPUT`` of the body's, or the stored, type).
    """
    properties = {
        "name": SERVICE_NAME_INPUT,
        "service_type": string(enum=list(SERVICE_TYPES)),
        "config": {"type": "object"},
    }
    return obj(dict(properties, **READ_ONLY), required=("name", "service_type") if create else ())


SERVICE_CREATE_FIELDS = service_input(create=True)
SERVICE_UPDATE_FIELDS = service_input(create=False)


def service_variants(output: bool) -> Schema:
    """One schema per service type, as answered or as created; ``service_type`` says which."""
    variants = []
    for service_type in SERVICE_TYPES:
        config = service_config(service_type, output) if output else SERVICE_CONFIG_INPUT[service_type]
        properties = {
            "name": string(pattern=SERVICE_NAME) if output else SERVICE_NAME_INPUT,
            "service_type": {"const": service_type},
            "config": config,
        }
        if output:
            variants.append(revised(dict(id=ID, **properties, created_at=TIMESTAMP, updated_at=TIMESTAMP)))
        else:
            required = ("name", "service_type") + (("config",) if config.get("required") else ())
            variants.append(obj(dict(properties, **READ_ONLY), required=required))
    return {"oneOf": variants}


def service_update() -> Schema:
    """A PUT: ``config`` must be of the stored service's type, which a schema cannot know."""
    properties = {
        "name": SERVICE_NAME_INPUT,
        "service_type": string(
            enum=list(SERVICE_TYPES), description="the service's own (400 otherwise: it cannot change)"
        ),
        "config": {
            "description": "the fields of the service's type (400 for another type's); replaces the whole config",
            "anyOf": [SERVICE_CONFIG_INPUT[t] for t in SERVICE_TYPES],
        },
    }
    # A body that names the type holds a config of that type.
    of_its_type = [
        {
            "if": {"properties": {"service_type": {"const": t}}, "required": ["service_type"]},
            "then": {"properties": {"config": SERVICE_CONFIG_INPUT[t]}},
        }
        for t in SERVICE_TYPES
    ]
    return obj(dict(properties, **READ_ONLY), allOf=of_its_type)


BINDING_INPUT = obj(
    {
        "service_id": string(),
        "pool_id": string(
            pattern=POOL_ID, **keywords({"x-error": f"must be 1 to {MAX_POOL_ID} letters, digits, '_' or '-'"})
        ),
    },
    required=("service_id", "pool_id"),
)

BINDING = record(
    {
        "endpoint_id": ID,
        "pool_id": string(),
        "service_id": ID,
        "created_at": TIMESTAMP,
        "replaced": nullable(string(description="the service the name named before")),
    }
)

UNBOUND = record({"endpoint_id": ID, "pool_id": string(), "service_id": ID, "deleted": {"const": True}})


# -- keys ----------------------------------------------------------------------

KEY_PROPERTIES = {
    "id": ID,
    "name": string(),
    "scope": string(enum=list(KEY_SCOPES)),
    "created_at": TIMESTAMP,
    "last_used_at": nullable(TIMESTAMP),
}

NEW_KEY = obj(
    {
        "name": string(MAX_KEY_NAME, rf"^{_NO_CONTROL}*[^\s\x00-\x1f\x7f]{_NO_CONTROL}*$"),
        "scope": string(enum=list(KEY_SCOPES), description="`read` may only GET; `admin` may do anything"),
    },
    required=("name", "scope"),
)


# -- consumers (the clients an api_key policy admits) ------------------------------

MAX_CONSUMER_NAME = 100
"""A consumer's name: what its handler receives (docs/policies.md), so a header value's length."""

#: A consumer's name: no control characters, not blank, unique ignoring case.
CONSUMER_NAME = string(
    MAX_CONSUMER_NAME,
    rf"^{_NO_CONTROL}*[^\s\x00-\x1f\x7f]{_NO_CONTROL}*$",
    description="unique ignoring case; the handler receives it as the consumer's identity",
)

CONSUMER_KEY = record({"id": ID, "created_at": TIMESTAMP})

CONSUMER = revised(
    {
        "id": ID,
        "name": string(),
        "enabled": BOOLEAN,
        "keys": array(CONSUMER_KEY, description="its API keys: ids and when made (a key is shown once, when made)"),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
)


def consumer_input(create: bool) -> Schema:
    """A consumer as created (``name`` required) or changed."""
    properties = dict(
        {"name": CONSUMER_NAME, "enabled": dict(BOOLEAN, description="false: its keys are refused (401); default true")},
        keys=ANY,
        **READ_ONLY,
    )
    return obj(properties, required=("name",) if create else ())


CONSUMER_CREATE = consumer_input(create=True)
CONSUMER_UPDATE = consumer_input(create=False)

NEW_CONSUMER_KEY = record(
    {
        "id": ID,
        "consumer_id": ID,
        "key": string(description="the key, shown this once; clients send it in the api_key policy's header"),
        "created_at": TIMESTAMP,
    }
)


# -- imports ---------------------------------------------------------------------

IMPORTED = {
    "created": array(string(), description="names of the endpoints created"),
    "updated": array(string()),
    "unchanged": array(string()),
    "collection": nullable(ID),
    "endpoints": array(record({"id": ID, "name": string(), "method": string(), "path": string()})),
}

IMPORT_OPENAPI = obj(
    {
        "spec": string(
            pattern=NOT_BLANK,
            description="the OpenAPI 3.0 or 3.1 spec's YAML or JSON text",
            **keywords({"x-error": "must be a string holding the spec's YAML or JSON text, not empty"}),
        ),
        "domain": nullable(dict(HOST, description="the host to serve on (a domain record is made)")),
        "collection_id": nullable(
            string(
                min_length=1,
                description="a collection's id (400 when there is none)",
                **keywords({"x-error": "must be a collection's id or null"}),
            )
        ),
        "create_collection": dict(BOOLEAN, default=False),
    },
    required=("spec",),
    # create_collection true and a collection_id: a 400.
    **keywords({
        "if": {"properties": {"create_collection": {"const": True}}, "required": ["create_collection"]},
        "then": {"properties": {"collection_id": {"type": "null"}}},
    }),
)

BUNDLE_ERROR = obj(
    {
        "operation": string(),
        "file": string(),
        "stage": string(enum=["read", "compile", "start"]),
        "message": string(),
        "endpoint_id": ID,
        "diagnostics": array(ref("Diagnostic")),
    },
    required=("operation", "file", "stage", "message"),
)

IMPORTED_BUNDLE = record(
    dict(
        IMPORTED,
        matched=map_of(string(), description="{operation: .rs file}"),
        unmatched_files=array(string()),
        compiled=array(string()),
        started=array(string()),
        errors=array(BUNDLE_ERROR),
    )
)


# -- envelopes, errors ------------------------------------------------------------


def page_of(item: Schema) -> Schema:
    """A page of a list answer."""
    return record(
        {
            "items": array(item),
            "total": integer(0),
            "page": integer(1),
            "limit": integer(1),
            "pages": integer(1),
        }
    )


def envelope(data: Schema) -> Schema:
    """A success answer around ``data``."""
    return obj({"ok": {"const": True}, "data": data}, required=("ok", "data"))


ERROR = obj(
    {
        "ok": {"const": False},
        "error": string(description="what went wrong, in words"),
        "field": string(description="the field or query parameter a 400 (or 409) is about, e.g. config.port"),
        "diagnostics": array(ref("Diagnostic"), description="a 422's compiler messages"),
        "bindings": array(
            record({"endpoint_id": ID, "endpoint_name": string(), "pool_id": string()}),
            description="a service still bound (409)",
        ),
        "kind": string(description="a 502's error kind (docs/ipc.md), e.g. ServiceUnavailable"),
        "retry_after": integer(1, description="a 429's or a 503's Retry-After, in seconds"),
        "revision": integer(0, description="a 412's: the record's revision now"),
        "endpoint_id": ID,
        "conflicts_with": string(description="the id of the endpoint already serving the route (409)"),
        "endpoints": integer(0, description="a 409's count of endpoints still in the way"),
        "collections": integer(0, description="a 409's count of collections still in the way"),
        "entry": string(description="the bundle entry a 400 or 413 is about"),
        "path": string(description="where in the imported spec a 400 is (a JSON pointer)"),
    },
    required=("ok", "error"),
)

DELETED = record({"id": ID, "deleted": {"const": True}})

# A node of the cluster as GET /api/nodes lists it (cluster/nodes.py).
NODE = obj(
    {
        "name": string(description="--node-name"),
        "address": nullable(string(description="its data plane's host:port")),
        "admin_address": nullable(string(description="its management API's host:port")),
        "version": nullable(string(description="the edgegw it runs")),
        "started_at": nullable(string(description="when it started (ISO 8601, UTC)")),
        "last_seen": nullable(string(description="its last heartbeat (ISO 8601, UTC)")),
        "state": string(enum=["up", "down"], description="down after it missed 3 heartbeats"),
        "workers": integer(0, description="the workers it runs, all endpoints together"),
        "endpoints": map_of(integer(0), description="its workers per endpoint: {endpoint_id: workers}"),
        "self": dict(BOOLEAN, description="the node answering this call"),
    },
    required=("name", "state", "workers", "endpoints", "self"),
    closed=False,
)

HEALTH = obj(
    {
        "status": {"const": "healthy"},
        "version": string(),
        # How workers are isolated (docs/isolation.md); modes strongest first.
        "isolation": record(
            {"mode": {"enum": list(_isolation.MODES)}, "detail": string(description="what the mode means")}
        ),
    },
    required=("status", "version"),
)



def schemas() -> dict[str, Schema]:
    """The named schemas of the document (``components/schemas``)."""
    endpoint = endpoint_properties()
    return {
        "Error": ERROR,
        "Diagnostic": DIAGNOSTIC,
        "Health": HEALTH,
        "Stats": STATS,
        "StatsHistory": STATS_HISTORY,
        "TestRequestInput": TEST_REQUEST_INPUT,
        "TestRequestAnswer": TEST_REQUEST_ANSWER,
        "Deleted": DELETED,
        "Node": NODE,
        "CascadeDeleted": CASCADE_DELETED,
        "Endpoint": endpoint_record(endpoint),
        "EndpointCreate": endpoint_input(create=True),
        "EndpointUpdate": endpoint_input(create=False),
        "CompiledEndpoint": endpoint_record(dict(endpoint, build=ref("Build"))),
        "Build": BUILD,
        "Version": VERSION,
        "RollbackInput": ROLLBACK_INPUT,
        "LogLine": LOG_LINE,
        "Domain": DOMAIN,
        "Collection": COLLECTION,
        "Service": service_variants(output=True),
        "ServiceCreate": service_variants(output=False),
        "ServiceUpdate": service_update(),
        "BindingInput": BINDING_INPUT,
        "Binding": BINDING,
        "Unbound": UNBOUND,
        "Consumer": CONSUMER,
        "NewConsumerKey": NEW_CONSUMER_KEY,
    }


