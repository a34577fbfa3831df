"""
Checking endpoint payloads of the management API.

Every problem is reported as ``BadRequest`` naming the field, so a client never
has to guess which part of its JSON was wrong. Typos are caught too: an unknown
field is an error, while the read-only fields of a record (as returned by GET)
are accepted and ignored so a client can PUT back what it read.
"""

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from edgegw_tx.admin import schema as _schema
from edgegw_tx.admin.schema import ecma_regex
from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.admin.policies import checked, unmasked
from edgegw_tx.admin.schema import (  # noqa: F401 (re-exported: the manager, runtime and tests read them here)
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
from edgegw_tx.build import InvalidDependency, check_dependencies
from edgegw_tx.paths import PatternError, parse_pattern, validate_method
from edgegw_tx.workers.network import PolicyError, check_policy

# Settings that shape the running workers: changing one of a running endpoint
# replaces its pool (new workers ready, route switched, old ones drained).
POOL_SETTINGS = tuple(name for name in DEFAULT_SETTINGS if name != "dependencies")
_SETTING_NAMES = tuple(DEFAULT_SETTINGS) + ("instances",)
READ_ONLY = set(_schema.ENDPOINT_READ_ONLY)
HOST = re.compile(_schema.HOST_PATTERN)
"""A routing host as sent (``schema.HOST_PATTERN``): ``*`` or a host name, any case, white space around."""


# -- a schema's verdict as a 400 ------------------------------------------------------

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}
# Which error of several to report: an unknown or missing field before a bad
# value, the outermost first (as a reader goes through the body).
_RANK = {"additionalProperties": 0, "required": 1, "type": 2}


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


SchemaValidator: Any = validators.extend(Draft202012Validator, {"pattern": _pattern})  # type: ignore[no-untyped-call]  # jsonschema leaves extend unannotated
"""JSON Schema 2020-12 with ECMA-262's ``$``: how the server and its tests read ``schema``."""
_validators: dict[int, Any] = {}


def field_path(parts: Iterable[object]) -> str:
    """A JSON path as the API names fields: ``settings.limits.memory_mb``, ``settings.network[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range_words(schema: _schema.Schema) -> str:
    """The range a number's schema allows, in words: "an integer from 1 to 64"."""
    kind = "an integer" if schema.get("type") == "integer" else "a number"
    words = []
    if "minimum" in schema:
        words.append(f"from {_number(schema['minimum'])}")
    if "exclusiveMinimum" in schema:
        words.append(f"above {_number(schema['exclusiveMinimum'])}")
    if "maximum" in schema:
        words.append(("to " if "minimum" in schema else "at most ") + _number(schema["maximum"]))
    if "exclusiveMaximum" in schema:
        words.append(f"below {_number(schema['exclusiveMaximum'])}")
    if "exclusiveMinimum" in schema and "maximum" in schema:
        words[-1] = "and " + words[-1]
    return " ".join([kind, *words])


def _problem(error: ValidationError, prefix: list[object]) -> tuple[str, str]:
    """(field, message) for one schema error; the field is a JSON path after ``prefix``."""
    where = [*prefix, *error.absolute_path]
    field = field_path(where)
    schema: Any = error.schema if isinstance(error.schema, dict) else {}
    keyword = error.validator
    value: Any = error.validator_value
    instance: Any = error.instance
    if keyword == "additionalProperties":
        known = set(schema.get("properties", ()))
        extra = sorted(set(instance) - known)[0]
        field = field_path([*where, extra])
        # An unknown setting has always been named by its container.
        return (field_path(where) if where == ["settings"] else field), f"unknown field '{field}'"
    if keyword == "required":
        missing = [name for name in value if name not in instance][0]
        field = field_path([*where, missing])
        return field, f"missing field '{field}'"
    if keyword == "propertyNames":
        return field, f"a key of field '{field}' is not allowed: {instance!r}"
    if "x-error" in schema:
        return field, f"field '{field}' {schema['x-error']}"
    if keyword in ("anyOf", "oneOf") and error.context:
        return _problem(best_match(error.context), prefix)
    if keyword == "type":
        types = value if isinstance(value, list) else [value]
        return field, f"field '{field}' must be " + " or ".join(_TYPE_WORDS[t] for t in types)
    if keyword == "maxLength":
        return field, f"field '{field}' is longer than {value} characters"
    if keyword == "minLength":
        return field, f"field '{field}' must not be empty"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return field, f"field '{field}' must be {_range_words(schema)}"
    if keyword == "enum":
        return field, f"field '{field}' must be one of: " + ", ".join(map(str, value))
    if keyword == "const":
        return field, f"field '{field}' must be {value!r}"
    if keyword in ("maxItems", "maxProperties"):
        return field, f"field '{field}' may have at most {value} entries"
    if keyword in ("minItems", "minProperties"):
        return field, f"field '{field}' must have at least {value} entries"
    if keyword == "pattern":
        return field, f"field '{field}' must match {value}"
    return field, f"field '{field}' is not valid: {error.message}"


def schema_errors(schema: _schema.Schema, value: Any) -> list[ValidationError]:
    """Every way ``value`` breaks ``schema``, the one to report first."""
    validator = _validators.get(id(schema))
    if validator is None:
        validator = _validators[id(schema)] = SchemaValidator(schema)
    errors = list(validator.iter_errors(value))
    errors.sort(key=lambda e: (len(e.absolute_path), _RANK.get(str(e.validator), 3)))
    return errors


def check_schema(
    schema: _schema.Schema,
    value: Any,
    refine: Callable[[list[object]], None] | None = None,
    prefix: str = "",
) -> None:
    """
    BadRequest naming the first field of ``value`` that ``schema`` refuses.
    ``refine(path)``, when given, may raise a more precise BadRequest for the
    part of the body at ``path`` (a rule another module owns). ``prefix``
    names ``value`` when it is one field of a body.
    """
    if not isinstance(value, dict) and schema.get("type") == "object":
        raise BadRequest("the request body must be a JSON object")
    errors = schema_errors(schema, value)
    if not errors:
        return
    if refine is not None:
        refine(list(errors[0].absolute_path))
    field, message = _problem(errors[0], [prefix] if prefix else [])
    raise BadRequest(message, field=field)


def check_host(payload: dict[str, Any], field: str) -> str:
    """
    ``payload[field]`` as a routing host (``schema.HOST``): ``*`` or a host
    name, stripped and lower-cased. The one rule for endpoints' ``domain`` and
    domains' ``host``.
    """
    check_schema(_schema.HOST, payload[field], prefix=field)
    return str(payload[field]).strip().lower()


def whole_number(value: Any) -> Any:
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


UNSAFE_IN_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")
"""What an endpoint name may not hold (``endpoint_name``); imports replace it."""


def _network(field: str, value: Any) -> Any:
    """``value`` as a network policy (``workers.network.check_policy``, its one rule)."""
    try:
        return check_policy(value)
    except PolicyError as e:
        if e.where is None:
            raise BadRequest(f"field '{field}' {e.problem}", field=field)
        where = f"{field}[{e.where}]"
        raise BadRequest(f"field '{where}': {e.problem}", field=where)


def _dependencies(field: str, value: Any) -> dict[str, Any]:
    """``value`` as dependencies (``build.check_dependencies``, its one rule)."""
    try:
        return check_dependencies(value)
    except InvalidDependency as e:
        where = f"{field}.{e.key}" if e.key else field
        raise BadRequest(f"field '{where}' {e.problem}", field=where)


_OWNED_ELSEWHERE = {"network": _network, "dependencies": _dependencies}
"""Settings whose rule another module owns: its words name the problem best."""


def _refine(payload: dict[str, Any]) -> Callable[[list[object]], None]:
    """For ``check_schema``: a refused setting owned elsewhere is told in its owner's words."""

    def refine(path: list[object]) -> None:
        container, at = (payload["settings"], 1) if path[:1] == ["settings"] else (payload, 0)
        if len(path) > at and path[at] in _OWNED_ELSEWHERE and isinstance(container, dict):
            name = str(path[at])
            _OWNED_ELSEWHERE[name](field_path(path[: at + 1]), container[name])

    return refine


def _settings(payload: dict[str, Any], current: dict[str, Any], creating: bool) -> dict[str, Any]:
    """
    The settings after ``payload`` (already checked by its schema) is applied
    to ``current``: given under ``settings`` or at the top level, normalised,
    with the rule a schema cannot say (``min_instances <= max_instances``).
    """
    settings = dict(current)
    given = {("settings." + k): v for k, v in payload.get("settings", {}).items()}
    given.update({name: payload[name] for name in _SETTING_NAMES if name in payload})
    named = {}  # setting name -> the field it was given as, for messages
    shorthand = None
    for field, value in given.items():
        name = field.rsplit(".", 1)[-1]
        if name == "instances":
            shorthand = (field, whole_number(value))
            continue
        if name in ("timeout", "idle_timeout"):
            value = float(value)
        elif name == "limits":
            # The limits given replace those in ``current``, the others stay.
            value = {**DEFAULT_LIMITS, **settings.get("limits", DEFAULT_LIMITS)}
            value.update({key: whole_number(number) for key, number in given[field].items()})
        elif name in _OWNED_ELSEWHERE:
            value = _OWNED_ELSEWHERE[name](field, value)
        elif name != "env":
            value = whole_number(value)
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


def effective_settings(stored: dict[str, Any]) -> dict[str, Any]:
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


def pool_settings_changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether two stored settings differ in a setting of the running workers."""
    before, after = effective_settings(before), effective_settings(after)
    return any(before[name] != after[name] for name in POOL_SETTINGS)


def rollback_version(payload: Any) -> str:
    """
    The body of ``POST /api/endpoints/{id}/rollback``, ``{"version": digest}``
    (``schema.ROLLBACK_INPUT``): the digest, or an unambiguous prefix of at
    least 7 hex digits, lower-cased.
    """
    check_schema(_schema.ROLLBACK_INPUT, payload)
    return str(payload["version"]).lower()


_ENDPOINT_CREATE = _schema.endpoint_input(create=True)
_ENDPOINT_UPDATE = _schema.endpoint_input(create=False)


def _route(method: Any, path: Any, field: str) -> dict[str, str]:
    """One route, checked and normalised; 400 naming ``field`` (``routes[1]``, or the one-route form's own)."""
    try:
        pattern = parse_pattern(path)
    except PatternError as e:
        name = f"{field}.path" if field.startswith("routes") else "path"
        raise BadRequest(f"field '{name}' is not a valid path pattern: {e}", field=name)
    return {"method": validate_method(method), "path": pattern.text}


def routes_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A record's routes (``routes``; a record of before has only its one ``method`` and ``path``)."""
    routes = record.get("routes")
    return list(routes) if routes else [{"method": record["method"], "path": record["path"]}]


def _routes(payload: dict[str, Any], current: dict[str, Any] | None) -> list[dict[str, str]] | None:
    """
    The routes after a create or update (None: unchanged).  ``routes`` is the
    whole set; ``method``/``path`` alone are the one-route form (on an update,
    a change of the first route); given together they must agree with the
    first of ``routes``.  One method and path shape twice is a 400.
    """
    if "routes" in payload:
        routes = [_route(r["method"], r["path"], f"routes[{i}]") for i, r in enumerate(payload["routes"])]
        for name in ("method", "path"):
            if name in payload and _route(
                payload.get("method", routes[0]["method"]), payload.get("path", routes[0]["path"]), name
            )[name] != routes[0][name]:
                raise BadRequest(
                    f"field '{name}' is the one-route form of 'routes' and must be the first route's "
                    f"({routes[0][name]}), not {payload[name]}; send one form or make them agree",
                    field=name,
                )
    elif "method" in payload or "path" in payload:
        if current is None and not ("method" in payload and "path" in payload):
            missing = "path" if "method" in payload else "method"
            raise BadRequest(f"missing field '{missing}'", field=missing)
        first = routes_of(current)[0] if current is not None else {}
        route = _route(payload.get("method", first.get("method")), payload.get("path", first.get("path")), "path")
        routes = [route] + (routes_of(current)[1:] if current is not None else [])
    else:
        return None  # an update leaving the routes as they are (a create without any failed its schema)
    seen: dict[tuple[str, str], int] = {}
    for i, route in enumerate(routes):
        shape = (route["method"], parse_pattern(route["path"]).shape)
        if shape in seen:
            raise BadRequest(
                f"field 'routes[{i}]': {route['method']} {route['path']} is the same route as "
                f"routes[{seen[shape]}] (one method and path shape once)",
                field=f"routes[{i}]",
            )
        seen[shape] = i
    return routes


def endpoint_fields(payload: Any, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    Check a create (``current`` None) or update payload against its schema
    (``schema.endpoint_input``); return the fields to store, normalised, plus
    what a schema cannot say: the path parsed, min <= max.
    """
    if current is None and isinstance(payload, dict) and not {"routes", "method", "path"} & set(payload):
        raise BadRequest("missing field 'routes' (or its one-route form, 'method' and 'path')", field="routes")
    # A policy PUT back as read (secrets masked) keeps the stored secrets.
    payload = unmasked(payload, current)
    check_schema(_ENDPOINT_CREATE if current is None else _ENDPOINT_UPDATE, payload, _refine(payload))
    fields: dict[str, Any] = {}
    if "name" in payload:
        fields["name"] = payload["name"].strip()
    routes = _routes(payload, current)
    if routes is not None:
        fields["routes"] = routes
        fields["method"], fields["path"] = routes[0]["method"], routes[0]["path"]
    if "domain" in payload:
        fields["domain"] = payload["domain"].strip().lower()
    elif current is None:
        fields["domain"] = "*"
    for name in ("collection_id", "description", "code", "enabled"):
        if name in payload:
            fields[name] = payload[name]
    if "policy" in payload:
        fields["policy"] = checked(payload["policy"], "endpoint")

    base = DEFAULT_SETTINGS if current is None else effective_settings(current["settings"])
    settings = _settings(payload, base, current is None)
    if current is None or settings != current["settings"]:
        fields["settings"] = settings
    return fields
