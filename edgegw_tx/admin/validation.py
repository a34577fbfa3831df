"""
Checking endpoint payloads of the management API.

Every problem is reported as ``BadRequest`` naming the field, so a client never
has to guess which part of its JSON was wrong. Typos are caught too: an unknown
field is an error, while the read-only fields of a record (as returned by GET)
are accepted and ignored so a client can PUT back what it read.
"""

import re

from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.build import InvalidDependency, check_dependencies
from edgegw_tx.paths import PatternError, parse_pattern, validate_method
from edgegw_tx.workers.network import DEFAULT_POLICY, PolicyError, check_policy

# ``dependencies``: crate name → version requirement or {version, features,
# default-features}, checked by the build plane's own rule (docs/dependencies.md).
#
# The worker pool's settings (docs/api.md, "Endpoint fields"): ``min_instances``
# workers are kept alive (0: none until a request comes), up to
# ``max_instances`` under load; ``max_queue`` requests may wait for a worker
# (beyond: 503 with Retry-After); a worker is replaced after ``max_requests``
# requests (0: never); a worker above ``min_instances`` idle for
# ``idle_timeout`` seconds stops. ``instances: N`` is accepted on input as
# shorthand for min_instances = max_instances = N (and is how records written
# before these settings stored it: ``effective_settings`` reads them so).
#
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
DEFAULT_SETTINGS = {
    "min_instances": 1,
    "max_instances": 4,
    "max_queue": 1000,
    "timeout": 30.0,
    "max_requests": 0,
    "idle_timeout": 60.0,
    "env": {},
    "pipeline": 16,
    "limits": DEFAULT_LIMITS,
    # ``network``: the workers' network policy (docs/isolation.md, "Network
    # policy"); its rule is ``edgegw_tx.workers.network.check_policy``.
    "network": DEFAULT_POLICY,
    "dependencies": {},
}
# Settings that shape the running workers: changing one of a running endpoint
# replaces its pool (new workers ready, route switched, old ones drained).
POOL_SETTINGS = tuple(name for name in DEFAULT_SETTINGS if name != "dependencies")
_SETTING_NAMES = tuple(DEFAULT_SETTINGS) + ("instances",)
MAX_INSTANCES = 64
MAX_QUEUE = 100_000
MAX_REQUESTS = 1_000_000_000
MAX_IDLE_TIMEOUT = 86_400.0
MAX_PIPELINE = 256
MAX_TIMEOUT = 3600.0
_DIGEST_PREFIX = re.compile(r"^[0-9a-f]{7,64}\Z")

_WRITABLE = {
    "name",
    "path",
    "method",
    "domain",
    "collection_id",
    "description",
    "code",
    "enabled",
    "settings",
    *_SETTING_NAMES,
}
READ_ONLY = {
    "id",
    "status",
    "artifact",
    "deployed",
    "last_error",
    "pids",
    "services",
    "route",
    "version",
    "workers",
    "queue",
    "created_at",
    "updated_at",
}
_REQUIRED_ON_CREATE = ("name", "path", "method")
_HOST = re.compile(r"^(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


def check_host(payload, field):
    """
    ``payload[field]`` as a routing host: ``*`` or a host name, stripped and
    lower-cased. The one rule for endpoints' ``domain`` and domains' ``host``.
    """
    host = string_field(payload, field, 253).strip().lower()
    if host != "*" and not _HOST.match(host):
        raise BadRequest(
            f"field '{field}' must be '*' or a host name such as api.example.com",
            field=field,
        )
    return host


def whole_number(value):
    """
    ``value`` as an int if it is an integer, or a float without a fraction
    (JSON has one number type: ``2.0`` is the integer 2, as JSON Schema says);
    None for anything else, booleans and strings included.
    """
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def string_field(payload, field, max_length, allow_empty=False):
    """``payload[field]`` as a string of at most ``max_length``; BadRequest naming the field."""
    value = payload[field]
    if not isinstance(value, str):
        raise BadRequest(f"field '{field}' must be a string", field=field)
    if not allow_empty and not value.strip():
        raise BadRequest(f"field '{field}' must not be empty", field=field)
    if len(value) > max_length:
        raise BadRequest(f"field '{field}' is longer than {max_length} characters", field=field)
    return value


UNSAFE_IN_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")
"""What an endpoint name may not hold (``endpoint_name``); imports replace it."""


def endpoint_name(name):
    """
    ``name`` if it is a safe endpoint name, else BadRequest: names end up in
    logs, bundles and file names, so no path separators, no control
    characters (NUL included) and not ``.`` or ``..``.
    """
    bad = UNSAFE_IN_NAME.search(name)
    if bad:
        what = "'/' or '\\'" if bad.group() in "/\\" else "control characters"
        raise BadRequest(f"field 'name' must not contain {what}: {name!r}", field="name")
    if name in (".", ".."):
        raise BadRequest(f"field 'name' must not be {name!r}", field="name")
    return name


def _integer(field, value, low, high, what=None):
    number = whole_number(value)
    if number is None or not low <= number <= high:
        raise BadRequest(what or f"field '{field}' must be an integer from {low} to {high}", field=field)
    return number


def _seconds(field, value, high):
    if type(value) not in (int, float) or not 0 < value <= high:
        raise BadRequest(
            f"field '{field}' must be a number of seconds above 0 and at most {high:g}", field=field
        )
    return float(value)


def _limits(field, value, current):
    """
    ``settings.limits``: the limits given replace those in ``current``, the
    others stay, so ``{"memory_mb": 256}`` changes one.
    """
    if not isinstance(value, dict):
        raise BadRequest(
            f"field '{field}' must be an object of limits: " + ", ".join(DEFAULT_LIMITS), field=field
        )
    limits = {**DEFAULT_LIMITS, **current}
    for key, number in value.items():
        where = f"{field}.{key}"
        if key not in LIMIT_RANGES:
            raise BadRequest(
                f"unknown field '{where}' (limits are: {', '.join(DEFAULT_LIMITS)})", field=where
            )
        low, high = LIMIT_RANGES[key]
        number = whole_number(number)
        if number is None or not (number == 0 or low <= number <= high):
            raise BadRequest(
                f"field '{where}' must be 0 (the gateway's own limit) or an integer from {low} to {high}",
                field=where,
            )
        limits[key] = number
    return limits


def _settings(payload, current, creating):
    settings = dict(current)
    given = {}
    if "settings" in payload:
        if not isinstance(payload["settings"], dict):
            raise BadRequest("field 'settings' must be an object", field="settings")
        unknown = set(payload["settings"]) - set(_SETTING_NAMES)
        if unknown:
            raise BadRequest(
                "unknown field 'settings.{}'".format(sorted(unknown)[0]), field="settings"
            )
        given.update({("settings." + k): v for k, v in payload["settings"].items()})
    for name in _SETTING_NAMES:
        if name in payload:
            given[name] = payload[name]
    named = {}  # setting name -> the field it was given as, for messages
    shorthand = None
    for field, value in given.items():
        name = field.rsplit(".", 1)[-1]
        if name == "instances":
            shorthand = (field, _integer(field, value, 1, MAX_INSTANCES))
            continue
        if name == "min_instances":
            value = _integer(field, value, 0, MAX_INSTANCES)
        elif name == "max_instances":
            value = _integer(field, value, 1, MAX_INSTANCES)
        elif name == "max_queue":
            value = _integer(field, value, 0, MAX_QUEUE)
        elif name == "max_requests":
            value = _integer(
                field, value, 0, MAX_REQUESTS,
                f"field '{field}' must be 0 (no limit) or an integer from 1 to {MAX_REQUESTS}",
            )
        elif name == "pipeline":
            value = _integer(field, value, 1, MAX_PIPELINE)
        elif name == "timeout":
            value = _seconds(field, value, MAX_TIMEOUT)
        elif name == "idle_timeout":
            value = _seconds(field, value, MAX_IDLE_TIMEOUT)
        elif name == "env":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str)
                for k, v in value.items()
            ):
                raise BadRequest(
                    f"field '{field}' must map variable names (letters, digits, _) to strings",
                    field=field,
                )
        elif name == "limits":
            value = _limits(field, value, settings.get("limits", DEFAULT_LIMITS))
        elif name == "network":
            try:
                value = check_policy(value)
            except PolicyError as e:
                if e.where is None:
                    raise BadRequest(f"field '{field}' {e.problem}", field=field)
                where = f"{field}[{e.where}]"
                raise BadRequest(f"field '{where}': {e.problem}", field=where)
        elif name == "dependencies":
            try:
                value = check_dependencies(value)
            except InvalidDependency as e:
                where = f"{field}.{e.key}" if e.key else field
                raise BadRequest(f"field '{where}' {e.problem}", field=where)
        settings[name] = value
        named[name] = field
    if shorthand is not None:
        # ``instances: N`` wins over min/max in the same body: an old client that
        # edits it in a record it read and PUTs the record back gets what it asked.
        field, number = shorthand
        settings["min_instances"] = settings["max_instances"] = number
        named["min_instances"] = named["max_instances"] = field
    elif creating and "max_instances" not in named:
        settings["max_instances"] = max(settings["min_instances"], DEFAULT_SETTINGS["max_instances"])
    if settings["min_instances"] > settings["max_instances"]:
        field = named.get("min_instances") or named.get("max_instances") or "settings.min_instances"
        raise BadRequest(
            "field '{}': min_instances ({}) must not be above max_instances ({})".format(
                field, settings["min_instances"], settings["max_instances"]
            ),
            field=field,
        )
    return settings


def effective_settings(stored):
    """
    A record's settings as the gateway applies them: a record written before
    min/max_instances (``instances: N``) reads as min = max = N, and settings
    it lacks take their defaults. Stored settings are rewritten in this shape
    on their next change.
    """
    settings = dict(stored)
    if "instances" in settings:
        number = settings.pop("instances")
        settings.setdefault("min_instances", number)
        settings.setdefault("max_instances", max(number, 1))
    for name, default in DEFAULT_SETTINGS.items():
        if name not in settings:
            settings[name] = dict(default) if isinstance(default, dict) else default
    settings["limits"] = {**DEFAULT_LIMITS, **settings["limits"]}
    return settings


def pool_settings_changed(before, after):
    """Whether two stored settings differ in a setting of the running workers."""
    before, after = effective_settings(before), effective_settings(after)
    return any(before[name] != after[name] for name in POOL_SETTINGS)


def rollback_version(payload):
    """
    The body of ``POST /api/endpoints/{id}/rollback``, ``{"version": digest}``:
    the digest (or an unambiguous prefix of at least 7 hex digits), lower-cased.
    """
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = set(payload) - {"version"}
    if unknown:
        raise BadRequest("unknown field '{}'".format(sorted(unknown)[0]), field=sorted(unknown)[0])
    if "version" not in payload:
        raise BadRequest("missing field 'version'", field="version")
    value = payload["version"]
    if not isinstance(value, str) or not _DIGEST_PREFIX.match(value.lower()):
        raise BadRequest(
            "field 'version' must be a version's digest (7 to 64 hex digits; "
            "GET /api/endpoints/{id}/versions lists them)",
            field="version",
        )
    return value.lower()


def endpoint_fields(payload, current=None):
    """
    Check a create (``current`` None) or update payload; return the fields to
    store, normalised, plus ``pattern`` (the parsed path) when the path is known.
    """
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = set(payload) - _WRITABLE - READ_ONLY
    if unknown:
        raise BadRequest("unknown field '{}'".format(sorted(unknown)[0]), field=sorted(unknown)[0])
    if current is None:
        for field in _REQUIRED_ON_CREATE:
            if field not in payload:
                raise BadRequest(f"missing field '{field}'", field=field)

    fields = {}
    if "name" in payload:
        fields["name"] = endpoint_name(string_field(payload, "name", 200).strip())
    if "path" in payload:
        text = string_field(payload, "path", 2000)
        try:
            pattern = parse_pattern(text)
        except PatternError as e:
            raise BadRequest(f"field 'path' is not a valid path pattern: {e}", field="path")
        fields["path"] = pattern.text
    if "method" in payload:
        try:
            fields["method"] = validate_method(string_field(payload, "method", 20))
        except ValueError as e:
            raise BadRequest(f"field 'method': {e}", field="method")
    if "domain" in payload:
        fields["domain"] = check_host(payload, "domain")
    elif current is None:
        fields["domain"] = "*"
    if "collection_id" in payload:
        value = payload["collection_id"]
        if value is not None and not isinstance(value, str):
            raise BadRequest("field 'collection_id' must be a string or null", field="collection_id")
        fields["collection_id"] = value
    if "description" in payload:
        fields["description"] = string_field(payload, "description", 10_000, allow_empty=True)
    if "code" in payload:
        fields["code"] = string_field(payload, "code", 1_000_000, allow_empty=True)
    if "enabled" in payload:
        if not isinstance(payload["enabled"], bool):
            raise BadRequest("field 'enabled' must be true or false", field="enabled")
        fields["enabled"] = payload["enabled"]

    base = DEFAULT_SETTINGS if current is None else effective_settings(current["settings"])
    settings = _settings(payload, base, current is None)
    if current is None or settings != current["settings"]:
        fields["settings"] = settings
    return fields
