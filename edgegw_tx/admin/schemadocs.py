"""
The field tables of ``docs/api.md`` and ``docs/policies.md`` and the Admin
UI's input limits (``admin_ui/js/limits.js``), derived from ``admin/schema.py``
(which composes the policy parts' schemas, ``edgegw_tx/policy/``).

A table sits between ``<!-- schema:NAME -->`` and ``<!-- /schema -->``, NAME
one of ``TABLES``. Its ``field``, ``type`` and ``default`` columns come from
the schema (the type column carries every limit, so the docs cannot drift
from the checks); the ``notes`` column is prose, kept from the document row of
the same field (a new field's notes start as its schema ``description``).
``tools/gen-api-docs`` rewrites the tables; ``tests/test_admin_schema.py``
fails when the document differs from what this module renders.
"""

import json
import re
from collections.abc import Iterator
from typing import Any

from edgegw_tx.admin import schema
from edgegw_tx.admin.schema import Schema
from edgegw_tx.policy import model as _policy

TABLES: dict[str, Schema] = {
    "endpoint": schema.endpoint_input(create=True),
    "collection": schema.COLLECTION_CREATE,
    "test-request": schema.TEST_REQUEST_INPUT,
    "key": schema.NEW_KEY,
    "service": schema.SERVICE_CREATE_FIELDS,
    **{f"service-{t}": schema.SERVICE_CONFIG_INPUT[t] for t in schema.SERVICE_TYPES},
    "domain": schema.DOMAIN_CREATE,
    "consumer": schema.CONSUMER_CREATE,
    # docs/policies.md: each part of a policy (``policy-rate-limit``).
    **{f"policy-{name.replace('_', '-')}": module.SCHEMA for name, module in _policy.PARTS.items()},
}
"""A table's name in its marker -> the body schema it describes."""

# The defaults the server fills in that a schema does not carry itself.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "endpoint": {
        "domain": "*",
        "collection_id": None,
        "description": "",
        "code": "",
        "enabled": True,
        **{f"settings.{name}": value for name, value in schema.DEFAULT_SETTINGS.items() if name != "limits"},
        **{f"settings.limits.{name}": value for name, value in schema.DEFAULT_LIMITS.items()},
        "settings.max_instances": "4 (or `min_instances` when that is higher)",
    },
    "collection": {"domain_id": None, "base_path": "", "description": ""},
    "domain": {"description": ""},
    "consumer": {"enabled": True},
    "test-request": {"headers": {}, "body": ""},
    "service": {"config": {}},
    # A service's config: the defaults of services.config.FIELDS (a path's is made from the name).
    **{
        f"service-{t}": {
            name: f"`{field.default.format(name='<name>')}`" if field.kind == "path" else field.default
            for name, field in schema.service_fields(t).items()
            if not field.required
        }
        for t in schema.SERVICE_TYPES
    },
}

_BEGIN = re.compile(r"^<!-- schema:([a-z-]+) -->\n", re.M)
_END = "<!-- /schema -->\n"
_HEADER = "| field | type | default | notes |\n| --- | --- | --- | --- |\n"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _is_blank_refused(field: Schema) -> bool:
    """Whether a string schema refuses blank text (its ``\\S`` pattern)."""
    return any(part.get("pattern") == schema.NOT_BLANK for part in [field, *field.get("allOf", ())])


def type_words(field: Schema) -> str:
    """A field's type and limits, in the words of the docs' ``type`` column."""
    kind = field.get("type")
    if isinstance(kind, list):
        if "enum" in field:  # null is said once, as a type
            field = dict(field, enum=[v for v in field["enum"] if v is not None])
        return " or ".join(type_words(dict(field, type=one)) if one != "null" else "null" for one in kind)
    if "oneOf" in field or ("anyOf" in field and kind is None):
        parts: list[Schema] = field.get("oneOf") or field.get("anyOf") or []
        alternatives = [type_words(part) for part in parts]
        return ", ".join(alternatives[:-1]) + " or " + alternatives[-1]
    if "enum" in field:
        names = [f"`{v}`" if kind == "string" and "default" in field else f'`"{v}"`' for v in field["enum"]]
        return ", ".join(names)
    if kind == "string":
        low = 1 if _is_blank_refused(field) else field.get("minLength", 0)
        if "maxLength" in field:
            span = f"{low}–{field['maxLength']:,}" if low else f"at most {field['maxLength']:,}"
            return f"string, {span} characters"
        return "string" if not low else "string, not empty"
    if kind == "integer":
        if "anyOf" in field:
            rng = field["anyOf"][1]
            return f"int, 0 or {rng['minimum']}–{rng['maximum']}"
        return f"int {field.get('minimum', '')}–{field.get('maximum', '')}".rstrip("–")
    if kind == "number":
        words = ["seconds" if "seconds" in str(field.get("description", "")) + str(field.get("x-error", "")) else "number"]
        if "exclusiveMinimum" in field:
            words.append(f"> {_number(field['exclusiveMinimum'])}")
        if "maximum" in field:
            words.append(f"≤ {_number(field['maximum'])}")
        return ", ".join(words)
    if kind == "boolean":
        return "bool"
    if kind == "array":
        items = field["items"]
        low, high = field.get("minItems", 0), field.get("maxItems")
        count = f"{low}–{high} " if high else ""
        if "title" in items:
            return f'a list of {count}`"{items["title"]}"`'
        if items.get("type") == "string":
            longest = f" of at most {items['maxLength']:,} characters" if "maxLength" in items else ""
            return f"a list of {count}strings{longest}"
        if items.get("type") == "object" and items.get("properties"):
            return f"a list of {count}objects `{{{', '.join(items['properties'])}}}`"
        return f"a list of {count}{type_words(items)}"
    if kind == "object":
        values = field.get("additionalProperties")
        most = f", at most {field['maxProperties']} entries" if "maxProperties" in field else ""
        if isinstance(values, dict) and values.get("type") == "string":
            longest = f" of at most {values['maxLength']:,} characters" if "maxLength" in values else ""
            return f"object of strings{longest}{most}"
        return f"object{most}"
    return "any"


def rows(name: str) -> Iterator[tuple[str, str, str]]:
    """``(field, type, default)`` of each field of table ``name``, in the schema's order."""
    body = TABLES[name]
    defaults = _DEFAULTS.get(name, {})
    required = set(body.get("required", ()))
    settings = set(body["properties"].get("settings", {}).get("properties", ()))

    def walk(properties: dict[str, Schema], prefix: str) -> Iterator[tuple[str, str, str]]:
        for key, field in properties.items():
            path = prefix + key
            if "type" not in field and "oneOf" not in field and "anyOf" not in field:
                continue  # a read-only field of the record: accepted and ignored
            if not prefix and key in settings:
                continue  # a setting at the top level: the settings.* rows say it
            if field.get("type") == "object" and field.get("properties"):
                yield from walk(field["properties"], path + ".")
                continue
            if path in required:
                default = "required"
            elif "default" in field or path in defaults:
                value = field["default"] if "default" in field else defaults[path]
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                default = value if isinstance(value, str) and "`" in value else f"`{json.dumps(value)}`"
            else:
                default = ""
            yield f"`{path}`", type_words(field), default

    yield from walk(body["properties"], "")


def _notes(table: str) -> dict[str, str]:
    """The notes column of a rendered table's rows, by field."""
    notes = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip()[1:-1].split("|")]
        if len(cells) >= 4:
            notes[cells[0]] = "|".join(cells[3:]).strip()
    return notes


def render_table(name: str, old: str = "") -> str:
    """Table ``name`` as markdown, the notes of ``old`` (the table it replaces) kept."""
    notes = _notes(old)
    lines = [_HEADER]
    for field, kind, default in rows(name):
        cells = (field, kind, default, notes.get(field, ""))
        lines.append("|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|\n")
    return "".join(lines)


def render(document: str) -> str:
    """``document`` with every marked table rendered from the schema."""
    out, at = [], 0
    for begin in _BEGIN.finditer(document):
        end = document.index(_END, begin.end())
        out.append(document[at : begin.end()])
        out.append(render_table(begin.group(1), document[begin.end() : end]))
        at = end
    out.append(document[at:])
    return "".join(out)


UI_LIMITS = {
    "endpointName": schema.MAX_NAME,
    "collectionName": schema.MAX_NAME,
    "keyName": schema.MAX_KEY_NAME,
    "description": schema.MAX_DESCRIPTION,
    "code": schema.MAX_CODE,
    "serviceName": schema.MAX_SERVICE_NAME,
    "poolId": schema.MAX_POOL_ID,
    "maxRoutes": schema.MAX_ROUTES,
}
"""What the Admin UI's inputs bound (``maxlength``, and how many routes a form has), by its name in ``LIMITS``."""


_UI_KINDS = {"integer": "int", "boolean": "bool", "secret": "secret", "choice": "choice"}


def ui_service_fields() -> dict[str, list[list[Any]]]:
    """
    Each service type's config fields for the Admin UI's form, from
    ``services.config.FIELDS``: ``[name, kind, default (a choice: its
    options, the default first), hint]``.
    """
    out: dict[str, list[list[Any]]] = {}
    for service_type in schema.SERVICE_TYPES:
        rows = out[service_type] = []
        for name, field in schema.service_fields(service_type).items():
            kind = _UI_KINDS.get(field.kind, "text")
            if field.kind == "choice":
                initial: Any = [field.default, *(c for c in field.choices if c != field.default)]
            elif field.kind in ("integer", "boolean", "secret", "optional_text"):
                initial = field.default
            else:
                initial = ""
            if field.required:
                hint = "required"
            elif field.kind == "path":
                hint = "relative to <data-dir>/services/; default " + field.default.format(name="<name>")
            elif field.kind == "integer":
                hint = f"{field.low} to {field.high}"
            else:
                hint = ""
            if field.backend:  # a storage backend's own field
                hint = f"{field.backend} backend" + (f"; {hint}" if hint else "")
            rows.append([name, kind, initial, hint] if hint else [name, kind, initial])
    return out


def render_ui_limits() -> str:
    """``admin_ui/js/limits.js``: the schema's limits as an ES module."""
    return (
        "// The management API's input limits, for the Admin UI's inputs. Generated from\n"
        "// edgegw_tx/admin/schema.py by tools/gen-api-docs: do not edit.\n"
        f"export const LIMITS = Object.freeze({json.dumps(UI_LIMITS, indent=2)});\n"
        "// What the API shows for a secret that is set (a service's password).\n"
        f"export const MASK = {json.dumps(schema.MASK)};\n"
        "// The config fields of each service type: [name, kind, default or options, hint].\n"
        f"export const SERVICE_FIELDS = Object.freeze({json.dumps(ui_service_fields(), indent=2)});\n"
    )
