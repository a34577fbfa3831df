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

# ``dependencies``: crate name → version requirement or {version, features,
# default-features}, checked by the build plane's own rule (docs/dependencies.md).
DEFAULT_SETTINGS = {"instances": 1, "timeout": 30.0, "env": {}, "pipeline": 16, "dependencies": {}}
MAX_INSTANCES = 64
MAX_PIPELINE = 256
MAX_TIMEOUT = 3600.0

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
    "instances",
    "timeout",
    "env",
    "pipeline",
    "dependencies",
}
_READ_ONLY = {
    "id",
    "status",
    "artifact",
    "deployed",
    "last_error",
    "pids",
    "services",
    "route",
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
    host = _string(payload, field, 253).strip().lower()
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


def _string(payload, field, max_length, allow_empty=False):
    value = payload[field]
    if not isinstance(value, str):
        raise BadRequest(f"field '{field}' must be a string", field=field)
    if not allow_empty and not value.strip():
        raise BadRequest(f"field '{field}' must not be empty", field=field)
    if len(value) > max_length:
        raise BadRequest(f"field '{field}' is longer than {max_length} characters", field=field)
    return value


def _settings(payload, current):
    settings = dict(current)
    given = {}
    if "settings" in payload:
        if not isinstance(payload["settings"], dict):
            raise BadRequest("field 'settings' must be an object", field="settings")
        unknown = set(payload["settings"]) - set(DEFAULT_SETTINGS)
        if unknown:
            raise BadRequest(
                "unknown field 'settings.{}'".format(sorted(unknown)[0]), field="settings"
            )
        given.update({("settings." + k): v for k, v in payload["settings"].items()})
    for name in DEFAULT_SETTINGS:
        if name in payload:
            given[name] = payload[name]
    for field, value in given.items():
        name = field.rsplit(".", 1)[-1]
        if name == "instances":
            value = whole_number(value)
            if value is None or not 1 <= value <= MAX_INSTANCES:
                raise BadRequest(
                    f"field '{field}' must be an integer from 1 to {MAX_INSTANCES}", field=field
                )
        elif name == "pipeline":
            value = whole_number(value)
            if value is None or not 1 <= value <= MAX_PIPELINE:
                raise BadRequest(
                    f"field '{field}' must be an integer from 1 to {MAX_PIPELINE}", field=field
                )
        elif name == "timeout":
            if type(value) not in (int, float) or not 0 < value <= MAX_TIMEOUT:
                raise BadRequest(
                    f"field '{field}' must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}",
                    field=field,
                )
            value = float(value)
        elif name == "env":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str)
                for k, v in value.items()
            ):
                raise BadRequest(
                    f"field '{field}' must map variable names (letters, digits, _) to strings",
                    field=field,
                )
        elif name == "dependencies":
            try:
                value = check_dependencies(value)
            except InvalidDependency as e:
                where = f"{field}.{e.key}" if e.key else field
                raise BadRequest(f"field '{where}' {e.problem}", field=where)
        settings[name] = value
    return settings


def endpoint_fields(payload, current=None):
    """
    Check a create (``current`` None) or update payload; return the fields to
    store, normalised, plus ``pattern`` (the parsed path) when the path is known.
    """
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = set(payload) - _WRITABLE - _READ_ONLY
    if unknown:
        raise BadRequest("unknown field '{}'".format(sorted(unknown)[0]), field=sorted(unknown)[0])
    if current is None:
        for field in _REQUIRED_ON_CREATE:
            if field not in payload:
                raise BadRequest(f"missing field '{field}'", field=field)

    fields = {}
    if "name" in payload:
        fields["name"] = _string(payload, "name", 200).strip()
    if "path" in payload:
        text = _string(payload, "path", 2000)
        try:
            pattern = parse_pattern(text)
        except PatternError as e:
            raise BadRequest(f"field 'path' is not a valid path pattern: {e}", field="path")
        fields["path"] = pattern.text
    if "method" in payload:
        try:
            fields["method"] = validate_method(_string(payload, "method", 20))
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
        fields["description"] = _string(payload, "description", 10_000, allow_empty=True)
    if "code" in payload:
        fields["code"] = _string(payload, "code", 1_000_000, allow_empty=True)
    if "enabled" in payload:
        if not isinstance(payload["enabled"], bool):
            raise BadRequest("field 'enabled' must be true or false", field="enabled")
        fields["enabled"] = payload["enabled"]

    base = DEFAULT_SETTINGS if current is None else current["settings"]
    settings = _settings(payload, base)
    if current is None or settings != current["settings"]:
        fields["settings"] = settings
    return fields
