"""
The OpenAPI 3.1 document of the management API, served at ``GET /api/openapi.json``.

Built once, at import, as plain Python data from reusable pieces; limits and
patterns come from the modules that enforce them where they can be imported
without side effects, so the document does not drift from the checks.
``tests/test_openapi.py`` validates it with openapi-spec-validator, checks that
it has exactly one operation per route, and runs schemathesis against a live
gateway with it, so an answer the document does not describe fails the suite.

What the document promises, beyond the shapes:

* every answer is the envelope ``{"ok": true, "data": ...}`` or
  ``{"ok": false, "error": "...", ...}`` (``Error``, whose other fields are
  all listed), except ``/api/openapi.json`` itself, which is the bare document
  so that tools can read it;
* request bodies are described as the server checks them: required fields,
  strict types, ranges, patterns, and ``additionalProperties: false`` wherever
  an unknown field is a 400 (the read-only fields of a record are accepted and
  ignored, so a record read with GET can be PUT back). What a schema cannot
  know is said in the descriptions: that a referenced domain or collection
  exists, that a service's new config is of its type, that a spec is valid;
* every status a handler can answer is listed: 401 and 429 on every call that
  needs a key, 403 on every call but a GET (a ``read`` key), 400 and 413 on
  every call with a body, 404 wherever an id is in the path. 405 (a known path
  with a method it does not have, with ``Allow``) and 500 (a bug) belong to no
  operation and are not listed.
"""

import json
import re

from edgegw_tx import __version__
from edgegw_tx.admin import limits
from edgegw_tx.admin import history as _history
from edgegw_tx.admin import probe as _probe
from edgegw_tx.admin.services import POOL_ID, SERVICE_NAME
from edgegw_tx.admin.validation import (
    _HOST,
    DEFAULT_LIMITS,
    DEFAULT_SETTINGS,
    LIMIT_RANGES,
    MAX_IDLE_TIMEOUT,
    MAX_INSTANCES,
    MAX_PIPELINE,
    MAX_QUEUE,
    MAX_REQUESTS,
    MAX_TIMEOUT,
)
from edgegw_tx.admin.validation import READ_ONLY as ENDPOINT_READ_ONLY
from edgegw_tx.build.project import MAX_DEPENDENCIES, MAX_FEATURES, SDK_CRATE
from edgegw_tx.paths import METHODS
from edgegw_tx.workers import network as _network
from edgegw_tx.workers import isolation as _isolation

# The service plane's config rules (``edgegw_tx.services.config``), copied:
# importing that package loads the database drivers, which the admin plane
# keeps optional (see ``services._config_module``). tests/test_openapi.py
# checks that the copies match.
SERVICE_TYPES = ("sqlite", "postgres", "redis", "storage")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
MAX_POOL_SIZE = 100
MASK = "********"

# The default body caps (--admin-max-body), for the document's descriptions.
MAX_BODY = limits.MAX_BODY
IMPORT_MAX_BODY = limits.IMPORT_MAX_BODY

ENDPOINT_STATUSES = ("created", "compiled", "running", "stopped", "error")
KEY_SCOPES = ("read", "admin")
MAX_DESCRIPTION = 10_000


# -- schema building blocks -----------------------------------------------------


def ref(name):
    return {"$ref": "#/components/schemas/" + name}


def string(max_length=None, pattern=None, min_length=None, **extra):
    schema = {"type": "string"}
    if min_length is not None:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    if pattern is not None:
        schema["pattern"] = pattern
    schema.update(extra)
    return schema


def integer(minimum=None, maximum=None, **extra):
    schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    schema.update(extra)
    return schema


BOOLEAN = {"type": "boolean"}


def nullable(schema):
    """``schema`` or null (3.1 spells it as a type list)."""
    schema = dict(schema)
    schema["type"] = [schema["type"], "null"]
    if "enum" in schema:
        schema["enum"] = schema["enum"] + [None]
    return schema


def obj(properties, required=(), closed=True, **extra):
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def record(properties):
    """An answered record: every property present, no other."""
    return obj(properties, required=tuple(properties))


def map_of(values, keys=None, **extra):
    schema = {"type": "object", "additionalProperties": values}
    if keys is not None:
        schema["propertyNames"] = keys
    schema.update(extra)
    return schema


def array(items, **extra):
    return dict({"type": "array", "items": items}, **extra)


def any_case(word):
    """A regex matching ``word`` in any letter case (JSON Schema regexes have no flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


TIMESTAMP = string(format="date-time", description="ISO 8601, UTC")
ID = string(description="a record id")
ANY = {"description": "a read-only field: accepted and ignored"}
READ_ONLY = {"id": ANY, "created_at": ANY, "updated_at": ANY}
DESCRIPTION = string(MAX_DESCRIPTION)

# Not blank: the server strips a name and refuses what is left empty.
NOT_BLANK = r"\S"
_NO_CONTROL = r"[^\x00-\x1f\x7f]"

# ``validation._HOST`` without its length look-ahead (maxLength says it), any
# letter case (the server lower-cases), surrounded by optional white space (the
# server strips), or ``*``.
_HOST_BODY = _HOST.pattern.removeprefix("^(?=.{1,253}$)").removesuffix("$").replace("a-z", "A-Za-z")
HOST = string(
    253,
    rf"^\s*(\*|{_HOST_BODY})\s*$",
    description="a host name (any case, stored lower-case), or * for any host",
)

METHOD_PATTERN = "^(" + "|".join(any_case(m) for m in sorted(METHODS)) + ")$"

# The grammar of ``paths.parse_pattern``, less what a regex cannot say (a
# parameter name used twice is a 400 too) and less non-ASCII literals and
# percent-escapes of non-ASCII bytes, which the server also takes.
_LITERAL = r"([A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-7][0-9A-Fa-f])+"
_PARAM = r"\{[A-Za-z_][A-Za-z0-9_]*\}"
_SEGMENTS = rf"(/({_LITERAL}|{_PARAM}))+"
PATH_PATTERN = rf"^(/|{_SEGMENTS})$"
BASE_PATH_PATTERN = rf"^({_SEGMENTS})?$"

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


# An empty query parameter (``?page=``) is taken as absent.
EMPTY = string(max_length=0)


def flag_parameter(name, description):
    """A ``true``/``false`` query parameter (empty: absent); anything else is a 400."""
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": string(enum=["true", "false", ""]),
    }


def query_parameter(name, description=None, schema=None):
    parameter = {"name": name, "in": "query", "schema": schema or string()}
    if description:
        parameter["description"] = description
    return parameter


QUERY_PAGE = [
    query_parameter("page", "1 and up (empty: 1)", {"anyOf": [integer(1, default=1), EMPTY]}),
    query_parameter("limit", "items per page (empty: 100)", {"anyOf": [integer(1, default=100), EMPTY]}),
]


# -- endpoints -------------------------------------------------------------------

_SDK_CRATE_ANY = "".join("[-_]" if c in "-_" else any_case(c) for c in SDK_CRATE)
CRATE_NAME = string(
    pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
    **{"not": {"pattern": f"^{_SDK_CRATE_ANY}$"}},
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


def seconds(maximum, description):
    return {"type": "number", "exclusiveMinimum": 0, "maximum": maximum, "description": description}


def limit(key, what):
    """One of ``settings.limits``: 0 or an integer in its range."""
    low, high = LIMIT_RANGES[key]
    return {
        "type": "integer",
        "anyOf": [{"const": 0}, {"minimum": low, "maximum": high}],
        "description": f"{what}; 0: the gateway's own limit (default {DEFAULT_LIMITS[key]})",
    }


def settings_properties(output=False):
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
            0, MAX_REQUESTS, description="requests a worker serves before it is replaced; 0: no limit (default)"
        ),
        "idle_timeout": seconds(
            MAX_IDLE_TIMEOUT, "seconds a worker above min_instances may idle before it stops (default 60)"
        ),
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_TIMEOUT,
            "description": "seconds per request",
        },
        "env": map_of(
            {"type": "string"}, keys={"pattern": ENV_NAME}, description="the workers' whole environment"
        ),
        "pipeline": integer(1, MAX_PIPELINE, description="requests written to one worker ahead"),
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
        ),
        "network": {
            "oneOf": [
                string(enum=list(_network.POLICIES)),
                array(
                    string(_network.MAX_ENTRY, _network.ALLOW_ENTRY_PATTERN),
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


_ENDPOINT_READ_ONLY = tuple(sorted(ENDPOINT_READ_ONLY))

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
        )
    },
    required=("version",),
)


def endpoint_input(create):
    properties = {
        "name": string(200, NOT_BLANK),
        "path": string(2000, PATH_PATTERN, description="a path pattern such as /users/{id}"),
        "method": string(20, METHOD_PATTERN, description="any letter case"),
        "domain": dict(
            HOST, description="* (the default) or the host of a domain record (400 otherwise)"
        ),
        "collection_id": nullable(string(description="a collection's id (400 when there is none)")),
        "description": DESCRIPTION,
        "code": string(1_000_000, description="the handler's Rust source"),
        "enabled": BOOLEAN,
        "settings": obj(settings_properties()),
    }
    properties.update(settings_properties())
    properties.update({name: ANY for name in _ENDPOINT_READ_ONLY})
    return obj(properties, required=("name", "path", "method") if create else ())


def endpoint_properties():
    return {
        "id": ID,
        "name": string(),
        "path": string(),
        "method": string(enum=sorted(METHODS)),
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
        "route": string(description="what the data plane matches: method, host and full path"),
        "version": nullable(string(description="the live version: the first 12 hex digits of its digest")),
        "workers": array(WORKER, description="the running workers, with those still draining after a switch"),
        "queue": integer(0, description="requests waiting for a worker"),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }


BUILD = record(
    {
        "digest": string(),
        "cached": BOOLEAN,
        "seconds": {"type": "number", "minimum": 0},
        "dependencies": array(string()),
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
    }
)


# -- domains, collections, stats ------------------------------------------------

DOMAIN = record(
    {
        "id": ID,
        "host": string(),
        "description": string(),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
)


def domain_input(create):
    properties = dict({"host": HOST, "description": DESCRIPTION}, **READ_ONLY)
    return obj(properties, required=("host",) if create else ())


COLLECTION = record(
    {
        "id": ID,
        "name": string(),
        "domain_id": nullable(ID),
        "base_path": string(),
        "description": string(),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
)


def collection_input(create):
    properties = {
        "name": string(200, NOT_BLANK),
        "domain_id": nullable(string(description="a domain's id (400 when there is none)")),
        "base_path": string(
            pattern=BASE_PATH_PATTERN,
            description="'' or a path prefix such as /v1 or /shops/{shop}, no trailing /",
        ),
        "description": DESCRIPTION,
    }
    properties.update(READ_ONLY)
    return obj(properties, required=("name",) if create else ())


COUNTS = record({"endpoints": integer(0), "collections": integer(0)})

CASCADE_DELETED = record({"id": ID, "deleted": {"const": True}, "cascaded": COUNTS})

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
        "requests": record({"served": integer(0), "failed": integer(0), "rejected": integer(0)}),
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
            _probe.MAX_PATH,
            _probe.PATH_PATTERN,
            description="the request target: path and query, visible ASCII (percent-encode the rest), no fragment",
        ),
        "headers": map_of(
            string(_probe.MAX_HEADER_VALUE, _probe.HEADER_VALUE_PATTERN),
            keys=string(_probe.MAX_HEADER_NAME, _probe.HEADER_NAME_PATTERN),
            maxProperties=_probe.MAX_HEADERS,
            description="header fields; Host picks the domain; Content-Length, Transfer-Encoding, "
            "Connection and the other hop-by-hop fields are set by the gateway and ignored",
        ),
        "body": string(_probe.MAX_REQUEST_BODY, description="sent as UTF-8"),
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": _probe.MAX_TIMEOUT,
            "default": _probe.DEFAULT_TIMEOUT,
            "description": "seconds; beyond: 504",
        },
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
        "truncated": dict(BOOLEAN, description=f"only the first {_probe.MAX_RESPONSE_BODY} bytes are in body"),
        "elapsed_ms": {"type": "number", "minimum": 0},
        "url": string(),
    }
)


# -- services and bindings ------------------------------------------------------

_SERVICE_HOST = string(253, r"^[A-Za-z0-9._:\-\[\]%]+$")
_TEXT = string(min_length=1, pattern=rf"^{_NO_CONTROL}*$")
_OPTIONAL_TEXT = nullable(string(pattern=rf"^{_NO_CONTROL}*$"))
# ``services.config.check_relative_path``: relative (no leading ``/`` or
# ``~``), no backslash or control character, no empty, ``.`` or ``..``
# segment, segments of at most 240 UTF-8 bytes: 240 ASCII characters, or 60
# of any (a regex cannot count bytes).
_SEGMENT = r"(?!\.\.?(/|$))([\x20-\x2e\x30-\x5b\x5d-\x7e]{1,240}|[^/\\\x00-\x1f\x7f]{1,60})"
RELATIVE_PATH = string(
    1024,
    rf"^(?!~)({_SEGMENT})(/{_SEGMENT})*$",
    description="relative to <data-dir>/services/; segments of at most 240 bytes",
)
PORT = integer(1, 65535)
POOL_SIZE = integer(1, MAX_POOL_SIZE)
SECRET = nullable(string(pattern=rf"^{_NO_CONTROL}*$", description=f'"{MASK}" in answers'))


def service_config(service_type, output):
    """The ``config`` of ``service_type``: as sent (``output`` False) or as answered."""
    fields = {
        "sqlite": {"path": RELATIVE_PATH, "create_if_missing": BOOLEAN},
        "postgres": {
            "host": _SERVICE_HOST,
            "port": PORT,
            "database": _TEXT,
            "username": _TEXT,
            "password": SECRET,
            "ssl_mode": string(enum=list(SSL_MODES) + ([] if output else [""])),
            "pool_size": POOL_SIZE,
        },
        "redis": {
            "host": _SERVICE_HOST,
            "port": PORT,
            "password": SECRET,
            "username": _OPTIONAL_TEXT,
            "database": integer(0, 2**31 - 1),
            "use_tls": BOOLEAN,
            "pool_size": POOL_SIZE,
        },
        "storage": {"path": RELATIVE_PATH},
    }[service_type]
    if output:
        return record(fields)
    # As sent, null is as good as absent: the default, or "is required".
    required = {"postgres": ("host", "database", "username"), "redis": ("host",)}.get(service_type, ())
    fields = {k: (v if k in required or "null" in v["type"] else nullable(v)) for k, v in fields.items()}
    return obj(fields, required=required)


def service_variants(output):
    """One schema per service type, as answered or as created; ``service_type`` says which."""
    variants = []
    for service_type in SERVICE_TYPES:
        config = service_config(service_type, output)
        properties = {
            "name": string(pattern=SERVICE_NAME.pattern),
            "service_type": {"const": service_type},
            "config": config,
        }
        if output:
            variants.append(record(dict(id=ID, **properties, created_at=TIMESTAMP, updated_at=TIMESTAMP)))
        else:
            required = ("name", "service_type") + (("config",) if config.get("required") else ())
            variants.append(obj(dict(properties, **READ_ONLY), required=required))
    return {"oneOf": variants}


def service_update():
    """A PUT: ``config`` must be of the stored service's type, which a schema cannot know."""
    properties = {
        "name": string(pattern=SERVICE_NAME.pattern),
        "service_type": string(
            enum=list(SERVICE_TYPES), description="the service's own (400 otherwise: it cannot change)"
        ),
        "config": {
            "description": "the fields of the service's type (400 for another type's); replaces the whole config",
            "anyOf": [service_config(t, False) for t in SERVICE_TYPES],
        },
    }
    return obj(dict(properties, **READ_ONLY))


BINDING_INPUT = obj(
    {"service_id": string(), "pool_id": string(pattern=POOL_ID.pattern)},
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
        "name": string(100, rf"^{_NO_CONTROL}*[^\s\x00-\x1f\x7f]{_NO_CONTROL}*$"),
        "scope": string(enum=list(KEY_SCOPES), description="`read` may only GET; `admin` may do anything"),
    },
    required=("name", "scope"),
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
        "spec": string(pattern=NOT_BLANK, description="the OpenAPI 3.0 or 3.1 spec's YAML or JSON text"),
        "domain": nullable(dict(HOST, description="the host to serve on (a domain record is made)")),
        "collection_id": nullable(string(min_length=1, description="a collection's id (400 when there is none)")),
        "create_collection": dict(BOOLEAN, default=False),
    },
    required=("spec",),
    # create_collection true and a collection_id: a 400.
    **{
        "if": {"properties": {"create_collection": {"const": True}}, "required": ["create_collection"]},
        "then": {"properties": {"collection_id": {"type": "null"}}},
    },
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

_FLAG_VALUES = string(enum=["true", "false", "1", "0", ""])


def bundle_query():
    """The query of an import bundle call; any other parameter is a 400."""
    return [
        query_parameter("domain", "the host to serve on (empty: *)", {"anyOf": [HOST, EMPTY]}),
        query_parameter("collection_id", "a collection's id"),
        query_parameter("create_collection", "true: make (or reuse) a collection named after info.title", _FLAG_VALUES),
        query_parameter("compile", "compile the endpoints that got a .rs file", _FLAG_VALUES),
        query_parameter("start", "compile, then start them", _FLAG_VALUES),
    ]


ZIP = string(contentMediaType="application/zip", description="a zip archive")
BUNDLE_CONTENT = {
    "multipart/form-data": {
        "schema": obj({"bundle": ZIP}, required=("bundle",)),
        "encoding": {"bundle": {"contentType": "application/zip"}},
    },
    **{
        media: {"schema": ZIP}
        for media in ("application/zip", "application/x-zip-compressed", "application/x-zip", "application/octet-stream")
    },
}


# -- envelopes, errors ------------------------------------------------------------


def page_of(item):
    return record(
        {
            "items": array(item),
            "total": integer(0),
            "page": integer(1),
            "limit": integer(1),
            "pages": integer(1),
        }
    )


def envelope(data):
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
        "retry_after": integer(1, description="a 429's Retry-After, in seconds"),
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


def json_content(schema):
    return {"application/json": {"schema": schema}}


def answer(description, data, links=None):
    """A success answer; ``links`` maps a link name to (operationId, {parameter: expression})."""
    response = {"description": description, "content": json_content(envelope(data))}
    if links:
        response["links"] = {
            name: {"operationId": operation_id, "parameters": parameters}
            for name, (operation_id, parameters) in links.items()
        }
    return response


def links_to(operation_ids, **parameters):
    """Links to each of ``operation_ids`` with the same parameters, named after them."""
    return {operation_id: (operation_id, parameters) for operation_id in operation_ids}


# Error answers: status -> (components/responses name, what it means).
ERRORS = {
    400: ("BadRequest", "bad input: not JSON, a missing, mistyped or unknown field (named in `field`)"),
    401: ("Unauthorized", "no `Authorization: Bearer <key>`, another scheme, or a key that is not known"),
    403: ("Forbidden", "a `read` key used for anything but GET, or a browser request from another site (`Sec-Fetch-Site`, `Origin`) that would change something"),
    404: ("NotFound", "no such record"),
    409: ("Conflict", "the change conflicts with the current state"),
    413: ("PayloadTooLarge", "the body, or an uploaded bundle once inflated, is over its cap"),
    422: ("CompileFailed", "the code did not compile; `diagnostics` says why"),
    429: ("TooManyRequests", "too many failed authentications from this address; the key is not looked at"),
    502: ("BadGateway", "the upstream failed: workers that died before they were ready, or a backend"),
    503: ("BuildUnavailable", "the build plane cannot run (no cargo, no SDK); or, with `Retry-After: 1`, the gateway is still starting (any call)"),
    504: ("GatewayTimeout", "the upstream did not answer in time (a test request's `timeout`)"),
}

# Headers that come with an error status.
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"schema": string(), "description": 'Bearer realm="edgegw"'}},
    429: {
        "Retry-After": {
            "required": True,
            "schema": string(pattern="^[1-9][0-9]*$"),
            "description": "whole seconds",
        }
    },
}


def error_responses():
    responses = {}
    for status, (name, what) in ERRORS.items():
        responses[name] = {"description": what, "content": json_content(ref("Error"))}
        if status in ERROR_HEADERS:
            responses[name]["headers"] = ERROR_HEADERS[status]
    return responses


# -- operations ------------------------------------------------------------------


def path_parameter(name, description):
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": string(min_length=1),
    }


def operation(
    method,
    operation_id,
    summary,
    tag,
    responses,
    errors=(),
    body=None,
    content=None,
    query=(),
    public=False,
    description=None,
    body_limit=MAX_BODY,
):
    """
    One operation: ``(method, operation object)``. ``responses`` maps success
    statuses to answers; ``errors`` lists the error statuses besides those
    that come with a key (401 and 429, and 403 on all but GET) and with a body
    (400 and 413). ``body`` is a JSON body's schema, ``content`` any other body.
    """
    op = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if query:
        op["parameters"] = list(query)
    statuses = set(errors)
    if body is not None:
        content = json_content(body)
    if content is not None:
        op["requestBody"] = {
            "required": True,
            "description": f"at most {body_limit // (1024 * 1024)} MiB (413 beyond)",
            "content": content,
        }
        statuses.update((400, 413))
    if public:
        op["security"] = []
    else:
        statuses.update((401, 429))
        if method != "get":
            statuses.add(403)
    op["responses"] = {str(status): response for status, response in responses.items()}
    for status in sorted(statuses):
        op["responses"][str(status)] = {"$ref": "#/components/responses/" + ERRORS[status][0]}
    return method, op


def path_item(*operations, parameters=()):
    item = dict(operations)
    if parameters:
        item["parameters"] = list(parameters)
    return item


def crud(
    noun,
    tag,
    schema,
    input_schemas,
    parameter,
    links,
    list_query=(),
    errors=None,
    delete=None,
    descriptions=None,
):
    """
    ``/api/<noun>s`` (list, create) and ``/api/<noun>s/{<noun>_id}`` (read,
    update, delete) of one kind of record, as ``{path: path item}``.
    ``errors`` adds error statuses per operation (``list``, ``create``, ...);
    ``delete`` replaces the delete answer and query; ``descriptions`` per operation.
    """
    plural = noun + "s"
    title = noun.capitalize()
    errors = errors or {}
    descriptions = descriptions or {}
    create_input, update_input = input_schemas
    delete_answer, delete_query = delete or (ref("Deleted"), ())
    collection = path_item(
        operation(
            "get",
            f"list{title}s",
            f"List {plural}, a page at a time",
            tag,
            {200: answer(f"a page of {plural}", page_of(schema))},
            errors=(400,) + errors.get("list", ()),
            query=list(list_query) + QUERY_PAGE,
        ),
        operation(
            "post",
            f"create{title}",
            f"Create a {noun}",
            tag,
            {201: answer("the new record", schema, links_to(links, **{parameter["name"]: "$response.body#/data/id"}))},
            errors=errors.get("create", ()),
            body=create_input,
            description=descriptions.get("create"),
        ),
    )
    item = path_item(
        operation(
            "get",
            f"get{title}",
            f"Read a {noun}",
            tag,
            {200: answer("the record", schema)},
            errors=(404,),
        ),
        operation(
            "put",
            f"update{title}",
            f"Change a {noun}",
            tag,
            {200: answer("the record as changed", schema)},
            errors=(404,) + errors.get("update", ()),
            body=update_input,
            description=descriptions.get("update"),
        ),
        operation(
            "delete",
            f"delete{title}",
            f"Delete a {noun}",
            tag,
            {200: answer("deleted", delete_answer)},
            errors=(404,) + errors.get("delete", ()),
            query=delete_query,
            description=descriptions.get("delete"),
        ),
        parameters=[parameter],
    )
    return {f"/api/{plural}": collection, f"/api/{plural}/{{{parameter['name']}}}": item}


ENDPOINT_ID = path_parameter("endpoint_id", "the endpoint's id")
SERVICE_ID = path_parameter("service_id", "the service's id")
DOMAIN_ID = path_parameter("domain_id", "the domain's id")
COLLECTION_ID = path_parameter("collection_id", "the collection's id")
KEY_ID = path_parameter("key_id", "the key's id (not the key)")
POOL_ID_PARAMETER = path_parameter("pool_id", "the binding's name (not the service id)")

# What a created record's id leads to (OpenAPI links, followed by stateful testers).
ENDPOINT_OPERATIONS = (
    "getEndpoint",
    "updateEndpoint",
    "compileEndpoint",
    "startEndpoint",
    "stopEndpoint",
    "restartEndpoint",
    "endpointVersions",
    "rollbackEndpoint",
    "endpointLogs",
    "endpointBindings",
    "bindService",
    "deleteEndpoint",
)
SERVICE_OPERATIONS = ("getService", "updateService", "testService", "deleteService")
DOMAIN_OPERATIONS = ("getDomain", "updateDomain", "domainCollections", "deleteDomain")
COLLECTION_OPERATIONS = ("getCollection", "updateCollection", "collectionEndpoints", "deleteCollection")


def endpoint_paths():
    paths = crud(
        "endpoint",
        "endpoints",
        ref("Endpoint"),
        (ref("EndpointCreate"), ref("EndpointUpdate")),
        ENDPOINT_ID,
        ENDPOINT_OPERATIONS,
        list_query=[
            query_parameter("domain", "only endpoints served on this host (any case)"),
            query_parameter("collection_id", "only the endpoints of this collection"),
            flag_parameter("enabled", "only enabled (true) or disabled (false) endpoints"),
        ],
        errors={"create": (409,), "update": (409, 502)},
        descriptions={
            "create": "409 when another endpoint serves the same method and path on the same host.",
            "update": (
                "A change of code or dependencies clears the compiled artifact; disabling a "
                "running endpoint stops it. 409 when the new route is another endpoint's. A change "
                "of a running endpoint's worker settings replaces its workers (new ones ready, "
                "route switched, old ones drained); 502 when the new ones fail to start (the "
                "old ones keep serving and those settings are not changed)."
            ),
            "delete": "Stops its workers first; deletes its bindings.",
        },
    )
    lifecycle = {
        "start": ("Start the workers: `status` is `running`, `pids` lists them", (404, 409, 502)),
        "stop": ("Drain and stop the workers: `status` is `stopped`", (404,)),
        "restart": (
            "New workers on the latest compiled binary, then drain the old ones "
            "(502 when they fail to start: the old ones keep serving)",
            (404, 409, 502),
        ),
    }
    for action, (summary, errors) in lifecycle.items():
        paths[f"/api/endpoints/{{endpoint_id}}/{action}"] = path_item(
            operation(
                "post",
                f"{action}Endpoint",
                summary,
                "endpoints",
                {200: answer("the record", ref("Endpoint"))},
                errors=errors,
            ),
            parameters=[ENDPOINT_ID],
        )
    unbind_link = links_to(
        ("unbindService",),
        endpoint_id="$response.body#/data/endpoint_id",
        pool_id="$response.body#/data/pool_id",
    )
    paths.update(
        {
            "/api/endpoints/{endpoint_id}/compile": path_item(
                operation(
                    "post",
                    "compileEndpoint",
                    "Compile the endpoint's code (waits for cargo)",
                    "endpoints",
                    {200: answer("compiled: the record and the build", ref("CompiledEndpoint"))},
                    errors=(404, 422, 503),
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/versions": path_item(
                operation(
                    "get",
                    "endpointVersions",
                    "The endpoint's compiled versions, newest first",
                    "endpoints",
                    {200: answer("a page of versions", page_of(ref("Version")))},
                    errors=(400, 404),
                    query=QUERY_PAGE,
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/rollback": path_item(
                operation(
                    "post",
                    "rollbackEndpoint",
                    "Serve an earlier version without compiling",
                    "endpoints",
                    {200: answer("the record, running that version", ref("Endpoint"))},
                    errors=(404, 409, 502),
                    body=ref("RollbackInput"),
                    description=(
                        "A running endpoint switches as a restart does (new workers ready, route "
                        "switched, old ones drained; 502 and the old ones keep serving when the new "
                        "ones fail to start); a stopped one starts on it. 404: no such version of this "
                        "endpoint; 409: its binary was pruned, or the endpoint is disabled."
                    ),
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/logs": path_item(
                operation(
                    "get",
                    "endpointLogs",
                    "The workers' stderr lines",
                    "endpoints",
                    {200: answer("the lines, oldest first", record({"lines": array(ref("LogLine"))}))},
                    errors=(400, 404),
                    query=[
                        query_parameter(
                            "since",
                            "epoch seconds: only lines after it (the last `time` seen)",
                            {"type": "number"},
                        )
                    ],
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/services": path_item(
                operation(
                    "get",
                    "endpointBindings",
                    "The endpoint's bindings",
                    "bindings",
                    {200: answer("{pool_id: service_id}", map_of(ID))},
                    errors=(404,),
                ),
                operation(
                    "post",
                    "bindService",
                    "Bind a service to the endpoint under a name",
                    "bindings",
                    {
                        201: answer("a new name", ref("Binding"), unbind_link),
                        200: answer(
                            "the name was bound already and now names this service", ref("Binding"), unbind_link
                        ),
                    },
                    errors=(404,),
                    body=ref("BindingInput"),
                ),
                parameters=[ENDPOINT_ID],
            ),
            "/api/endpoints/{endpoint_id}/services/{pool_id}": path_item(
                operation(
                    "delete",
                    "unbindService",
                    "Remove the binding named pool_id",
                    "bindings",
                    {200: answer("unbound", ref("Unbound"))},
                    errors=(404,),
                ),
                parameters=[ENDPOINT_ID, POOL_ID_PARAMETER],
            ),
        }
    )
    return paths


def domain_paths():
    cascade = [flag_parameter("cascade", "true: delete what is in the way with it")]
    paths = crud(
        "domain",
        "domains",
        ref("Domain"),
        (domain_input(True), domain_input(False)),
        DOMAIN_ID,
        DOMAIN_OPERATIONS,
        # 404 on the collection routes too: a gateway built without domains.
        errors={"list": (404,), "create": (404, 409), "update": (409,), "delete": (400, 409)},
        delete=(ref("CascadeDeleted"), cascade),
        descriptions={
            "create": "409 when a domain has the host already.",
            "update": "A new host moves the endpoints on the old one, running ones at once; 409 on a clash.",
            "delete": (
                "409 (with `endpoints` and `collections` counts) while endpoints use its host or "
                "collections belong to it, unless `cascade=true`: then they are deleted first."
            ),
        },
    )
    paths.update(
        crud(
            "collection",
            "collections",
            ref("Collection"),
            (collection_input(True), collection_input(False)),
            COLLECTION_ID,
            COLLECTION_OPERATIONS,
            list_query=[query_parameter("domain_id", "only the collections of this domain")],
            errors={"list": (404,), "create": (404,), "update": (409,), "delete": (400, 409)},
            delete=(ref("CascadeDeleted"), cascade),
            descriptions={
                "create": "400 when `domain_id` names no domain.",
                "update": "A new base path or domain moves its endpoints, running ones at once; 409 on a clash.",
                "delete": "409 (with the `endpoints` count) while it has endpoints, unless `cascade=true`.",
            },
        )
    )
    paths["/api/domains/{domain_id}/collections"] = path_item(
        operation(
            "get",
            "domainCollections",
            "The domain's collections",
            "domains",
            {200: answer("a page of collections", page_of(ref("Collection")))},
            errors=(400, 404),
            query=QUERY_PAGE,
        ),
        parameters=[DOMAIN_ID],
    )
    paths["/api/collections/{collection_id}/endpoints"] = path_item(
        operation(
            "get",
            "collectionEndpoints",
            "The collection's endpoints",
            "collections",
            {200: answer("a page of endpoints", page_of(ref("Endpoint")))},
            errors=(400, 404),
            query=QUERY_PAGE,
        ),
        parameters=[COLLECTION_ID],
    )
    return paths


def service_paths():
    paths = crud(
        "service",
        "services",
        ref("Service"),
        (ref("ServiceCreate"), ref("ServiceUpdate")),
        SERVICE_ID,
        SERVICE_OPERATIONS,
        list_query=[query_parameter("service_type", "only services of this type")],
        # 404 on the collection routes too: a gateway built without the service plane.
        errors={"list": (404,), "create": (404, 409), "update": (409,), "delete": (409,)},
        descriptions={
            "create": "Answers with secrets masked. 409 when the name is taken (names ignore case).",
            "update": f'A secret sent as "{MASK}" keeps the stored one; 409 when the name is taken.',
            "delete": "Closes its connections; 409 while it is bound, with `bindings` naming them.",
        },
    )
    paths["/api/services/{service_id}/test"] = path_item(
        operation(
            "post",
            "testService",
            "Ask the backend to answer",
            "services",
            {200: answer("it answered", record({"latency_ms": {"type": "number", "minimum": 0}}))},
            errors=(404, 502),
            description="502 with the backend's message and `kind` when it fails.",
        ),
        parameters=[SERVICE_ID],
    )
    return paths


def key_paths():
    listed = record(dict(KEY_PROPERTIES, current=dict(BOOLEAN, description="the key making this request")))
    created = record(dict(KEY_PROPERTIES, key=string(description="the key itself, shown this once")))
    revoked = record(dict(KEY_PROPERTIES, deleted={"const": True}))
    return {
        "/api/keys": path_item(
            operation(
                "get",
                "listKeys",
                "List API keys (never the keys themselves)",
                "keys",
                {200: answer("a page of keys", page_of(listed))},
                errors=(400,),
                query=QUERY_PAGE,
            ),
            operation(
                "post",
                "createKey",
                "Create an API key",
                "keys",
                {
                    201: answer(
                        "the record and `key`, the plaintext: the only time it is shown",
                        created,
                        links_to(("deleteKey",), key_id="$response.body#/data/id"),
                    )
                },
                body=NEW_KEY,
            ),
        ),
        "/api/keys/{key_id}": path_item(
            operation(
                "delete",
                "deleteKey",
                "Revoke an API key",
                "keys",
                {200: answer("revoked: the next request with it is a 401", revoked)},
                errors=(404, 409),
                description="409 for the last `admin` key: create another first.",
            ),
            parameters=[KEY_ID],
        ),
    }


def import_paths():
    return {
        "/api/import/openapi": path_item(
            operation(
                "post",
                "importOpenapi",
                "One endpoint per operation of an OpenAPI spec, with a stub handler",
                "imports",
                {200: answer("what the import did", record(IMPORTED))},
                errors=(409,),
                body=IMPORT_OPENAPI,
                body_limit=IMPORT_MAX_BODY,
                description=(
                    "400 (with `field` and `path`, a JSON pointer) for a spec that is not valid "
                    "OpenAPI 3.0 or 3.1 or has a path the gateway cannot route, before anything is "
                    "written; 400 for a `collection_id` that names no collection."
                ),
            )
        ),
        "/api/import/bundle": path_item(
            operation(
                "post",
                "importBundle",
                "A zip of an OpenAPI spec and handler .rs files matched to operationIds",
                "imports",
                {200: answer("what the import did, with each file's fate", IMPORTED_BUNDLE)},
                errors=(409,),
                content=BUNDLE_CONTENT,
                body_limit=IMPORT_MAX_BODY,
                query=bundle_query(),
                description=(
                    "The zip as multipart/form-data field `bundle`, or as the raw body. 400 for "
                    "a body that is not a zip, an unsafe entry name, an invalid spec, or a query "
                    "parameter not listed here; 413 for a bundle over its caps, inflated."
                ),
            )
        ),
    }


def system_paths():
    return {
        "/api/health": path_item(
            operation(
                "get",
                "health",
                "Is the gateway up",
                "system",
                {200: answer("healthy", ref("Health"))},
                errors=(503,),
                public=True,
            )
        ),
        "/api/openapi.json": path_item(
            operation(
                "get",
                "openapi",
                "This document",
                "system",
                {
                    200: {
                        "description": "the OpenAPI 3.1 document, bare (not in the envelope)",
                        "content": json_content({"type": "object", "required": ["openapi", "paths"]}),
                    }
                },
                public=True,
            )
        ),
        "/api/stats": path_item(
            operation(
                "get",
                "stats",
                "Endpoint counts by status, requests handled, workers, uptime",
                "system",
                {200: answer("the numbers", ref("Stats"))},
            )
        ),
        "/api/stats/history": path_item(
            operation(
                "get",
                "statsHistory",
                "Requests, request rate and latency over the last minutes, per endpoint and in all",
                "system",
                {200: answer("the samples, as columns", ref("StatsHistory"))},
                errors=(400, 404),
                query=[
                    query_parameter("endpoint_id", "only this endpoint (404 when there is none)"),
                    query_parameter(
                        "top",
                        f"this many endpoints, those with the most requests in the window (empty: {_history.DEFAULT_TOP})",
                        {"anyOf": [integer(1, _history.MAX_TOP, default=_history.DEFAULT_TOP), EMPTY]},
                    ),
                ],
                description=(
                    f"One sample every {_history.DEFAULT_INTERVAL:g} s of the running endpoints' worker "
                    f"pools, the last {_history.DEFAULT_WINDOW / 60:g} minutes, in memory. Each series "
                    "has one value per `times` entry; an endpoint's values are null where it was not "
                    "running. `p50_ms` is estimated from latency buckets."
                ),
            )
        ),
        "/api/test-request": path_item(
            operation(
                "post",
                "testRequest",
                "Send a request to this gateway's data plane and answer what it answered",
                "system",
                {200: answer("the data plane's answer, whatever its status", ref("TestRequestAnswer"))},
                errors=(404, 502, 504),
                body=ref("TestRequestInput"),
                description=(
                    "For the Admin UI's test console. The connection always goes to the gateway's own "
                    "data-plane listener, whatever `Host` says. 502 when the data plane cannot be "
                    "reached or drops the connection, 504 after `timeout`."
                ),
            )
        ),
    }


# -- the document ------------------------------------------------------------------

TAGS = ("system", "endpoints", "bindings", "services", "domains", "collections", "keys", "imports")


def schemas():
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
        "CascadeDeleted": CASCADE_DELETED,
        "Endpoint": record(endpoint),
        "EndpointCreate": endpoint_input(create=True),
        "EndpointUpdate": endpoint_input(create=False),
        "CompiledEndpoint": record(dict(endpoint, build=ref("Build"))),
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
    }


def build_document():
    paths = {}
    for part in (system_paths, endpoint_paths, domain_paths, service_paths, key_paths, import_paths):
        paths.update(part())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgegw management API",
            "version": __version__,
            "description": (
                "The control plane of edgegw (docs/api.md). Every answer is "
                '`{"ok": true, "data": ...}` or `{"ok": false, "error": "...", ...}` with a '
                "matching status; every call but GET /api/health and GET /api/openapi.json needs "
                "`Authorization: Bearer <key>`."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": name} for name in TAGS],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key; `read` keys may only GET",
                }
            },
            "schemas": schemas(),
            "responses": error_responses(),
        },
    }


DOCUMENT = build_document()
DOCUMENT_JSON = json.dumps(DOCUMENT, separators=(",", ":")).encode("utf-8")
