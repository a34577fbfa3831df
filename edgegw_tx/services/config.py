"""
The configuration of a service: validation, defaults, secrets.

The public face (the management API and the store code against it)::

    SERVICE_TYPES = ("sqlite", "postgres", "redis", "storage")

    class ConfigError(ValueError):       # .field ("config.port"), .message
    validate_config(service_type, config, *, name) -> dict
    mask(service_type, config) -> dict
    merge_secrets(service_type, new_config, old_config) -> dict

``validate_config`` returns a new, normalised dict holding every field of the
type, defaults filled in, and raises ``ConfigError`` naming the first bad field.
It is idempotent: a normalised config validates to itself.  Unknown fields are
refused.  Each type's fields, their defaults and limits are the table
``FIELDS`` (one ``Field`` each), the one place they are written: the
management API publishes its schema from it (``admin/schema.py``) and
docs/api.md's table of service fields is generated from that.  Types are
strict: a port is a JSON integer (or a float without a fraction), not
``"5432"``; null is as good as absent.

The ``path`` of sqlite and storage is relative to ``<data_dir>/services/``: it
must be relative, made of non-empty ``/``-separated segments, none of them
``.`` or ``..``, with no backslash or control character, so it stays inside that
folder (the connectors also check the resolved path at run time, so a symlink
cannot lead out).  When absent it is derived from the service's name; a name
that makes no valid path asks for an explicit ``path``.

The S3-compatible storage fields (``endpoint``, ``bucket``, ``access_key``,
``secret_key``, ``region``) are refused with "not supported yet": only the
filesystem backend exists.

Secrets are ``password`` (postgres, redis) and ``access_key``, ``secret_key``
(storage).  ``mask`` replaces each one that is set with ``"********"``;
``merge_secrets`` lets a client send a masked config back unchanged: a secret
equal to ``"********"`` takes the stored value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MASK",
    "SECRET_FIELDS",
    "SERVICE_TYPES",
    "FIELDS",
    "ConfigError",
    "Field",
    "check_relative_path",
    "mask",
    "merge_secrets",
    "validate_config",
]

SERVICE_TYPES = ("sqlite", "postgres", "redis", "storage")

MASK = "********"

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

S3_FIELDS = ("endpoint", "bucket", "access_key", "secret_key", "region")
# The S3 secrets: never stored (S3 is refused), but masked if a record had them.
_S3_SECRETS = ("access_key", "secret_key")

MAX_POOL_SIZE = 100
MAX_PORT = 65535
MAX_REDIS_DATABASE = 2**31 - 1
MAX_HOST = 253
MAX_PATH = 1024
"""A ``path``'s length, in characters."""
MAX_SEGMENT_BYTES = 240
"""A ``path`` segment's length, in UTF-8 bytes."""
HOST_PATTERN = r"^[A-Za-z0-9._:\-\[\]%]+$"
"""A ``host``: a name or an IP address (IPv6 in ``[]`` or bare, with a ``%zone``)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST = re.compile(HOST_PATTERN[:-1] + r"\Z")


@dataclass(frozen=True)
class Field:
    """
    One config field of a service type: the one place its rule is written
    (``validate_config`` applies it, ``admin/schema.py`` publishes it).

    :ivar kind: ``"host"``, ``"text"`` (a non-empty string), ``"optional_text"``
        (a string or null), ``"secret"`` (a string; masked in answers),
        ``"integer"``, ``"boolean"``, ``"choice"`` (one of ``choices``; ``""``
        means the default) or ``"path"`` (``check_relative_path``).
    :ivar default: the value when absent or null; ``REQUIRED`` when there is
        none. A ``path``'s default is a template of the service's ``{name}``.
    :ivar low: an integer's lowest value.
    :ivar high: an integer's highest value.
    :ivar choices: a ``choice``'s values.
    """

    kind: str
    default: Any = None
    low: int = 0
    high: int = 0
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """Whether the field has no default (absent or null: "is required")."""
        return self.default is REQUIRED


class _Required:
    """The default of a field that has none."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_PORT = 1, MAX_PORT
_POOL = 1, MAX_POOL_SIZE

FIELDS: dict[str, dict[str, Field]] = {
    "sqlite": {
        "path": Field("path", "{name}.sqlite3"),
        "create_if_missing": Field("boolean", True),
    },
    "postgres": {
        "host": Field("host", REQUIRED),
        "port": Field("integer", 5432, *_PORT),
        "database": Field("text", REQUIRED),
        "username": Field("text", REQUIRED),
        "password": Field("secret"),
        "ssl_mode": Field("choice", "prefer", choices=SSL_MODES),
        "pool_size": Field("integer", 10, *_POOL),
    },
    "redis": {
        "host": Field("host", REQUIRED),
        "port": Field("integer", 6379, *_PORT),
        "password": Field("secret"),
        "username": Field("optional_text"),
        "database": Field("integer", 0, 0, MAX_REDIS_DATABASE),
        "use_tls": Field("boolean", False),
        "pool_size": Field("integer", 10, *_POOL),
    },
    "storage": {"path": Field("path", "{name}")},
}
"""Each service type's config fields, in the order a config is answered."""

SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    service_type: tuple(name for name, field in fields.items() if field.kind == "secret")
    + (_S3_SECRETS if service_type == "storage" else ())
    for service_type, fields in FIELDS.items()
}


class ConfigError(ValueError):
    """
    A service configuration is invalid.

    :ivar field: the offending field, e.g. ``"config.port"`` (or
        ``"service_type"``, ``"config"``).
    :ivar message: what is wrong with it.
    """

    def __init__(self, field: str, message: str):
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_relative_path(path: object, field: str = "config.path") -> str:
    """
    Return ``path`` if it is a safe relative path (see the module docstring).

    :raises ConfigError: naming ``field``.
    """
    if not isinstance(path, str):
        raise ConfigError(field, f"must be a string, not {_type_name(path)}")
    if not path:
        raise ConfigError(field, "must not be empty")
    if len(path) > MAX_PATH:
        raise ConfigError(field, f"must be at most {MAX_PATH} characters")
    if path.startswith("/") or path.startswith("~"):
        raise ConfigError(
            field, f"{path!r} must be relative to the data dir's services folder"
        )
    if "\\" in path:
        raise ConfigError(field, f"{path!r} must not contain a backslash")
    if _CONTROL.search(path):
        raise ConfigError(field, f"{path!r} must not contain control characters")
    for segment in path.split("/"):
        if segment == "":
            raise ConfigError(field, f"{path!r} has an empty segment")
        if segment in (".", ".."):
            raise ConfigError(
                field, f"{path!r} must not contain '{segment}' segments"
            )
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise ConfigError(field, f"{path!r} has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    return path


class _Fields:
    """Reads one config dict, remembering which fields were consumed."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.seen: set[str] = set()

    def get(self, name: str) -> Any:
        self.seen.add(name)
        return self.config.get(name)

    def string(self, name: str, default: Any = ..., *, allow_empty: bool = False) -> Any:
        value = self.get(name)
        if value is None:
            if default is ...:
                raise ConfigError(f"config.{name}", "is required")
            return default
        if not isinstance(value, str):
            raise ConfigError(
                f"config.{name}", f"must be a string, not {_type_name(value)}"
            )
        if not value and not allow_empty:
            if default is ...:
                raise ConfigError(f"config.{name}", "must not be empty")
            return default
        if _CONTROL.search(value):
            raise ConfigError(f"config.{name}", "must not contain control characters")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        if type(value) is float and value.is_integer():
            value = int(value)  # JSON has one number type: 5432.0 is the integer 5432
        if type(value) is not int:
            raise ConfigError(
                f"config.{name}", f"must be an integer, not {_type_name(value)}"
            )
        if not low <= value <= high:
            raise ConfigError(
                f"config.{name}", f"must be between {low} and {high}, not {value}"
            )
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(
                f"config.{name}", f"must be true or false, not {_type_name(value)}"
            )
        return value

    def host(self, name: str = "host") -> str:
        value: str = self.string(name)
        if len(value) > MAX_HOST or not _HOST.match(value):
            raise ConfigError(
                f"config.{name}", f"{value!r} is not a host name or IP address"
            )
        return value

    def secret(self, name: str) -> str | None:
        value = self.string(name, None, allow_empty=True)
        return value or None

    def reject_unknown(self, service_type: str) -> None:
        for name in sorted(self.config, key=str):
            if name in self.seen:
                continue
            if service_type == "storage" and name in S3_FIELDS:
                raise ConfigError(
                    f"config.{name}",
                    "S3-compatible storage is not supported yet; only the"
                    " filesystem backend (config.path) is",
                )
            known = ", ".join(sorted(self.seen))
            raise ConfigError(
                f"config.{name}",
                f"unknown field for a {service_type} service (known: {known})",
            )


def _default_path(fields: _Fields, default: str) -> str:
    value = fields.get("path")
    if value is None:
        try:
            return check_relative_path(default)
        except ConfigError as e:
            raise ConfigError(
                "config.path",
                f"the service name gives no usable default path ({e.message});"
                " set config.path",
            ) from None
    return check_relative_path(value)


def _value(fields: _Fields, name: str, field: Field, service_name: str) -> Any:
    """The checked value of the config field ``name`` (``field`` says its rule)."""
    if field.kind == "path":
        return _default_path(fields, field.default.format(name=service_name))
    if field.kind == "host":
        return fields.host(name)
    if field.kind == "integer":
        return fields.integer(name, field.default, field.low, field.high)
    if field.kind == "boolean":
        return fields.boolean(name, field.default)
    if field.kind == "secret":
        return fields.secret(name)
    if field.kind == "text":
        return fields.string(name)
    if field.kind == "optional_text":
        return fields.string(name, None)
    value = fields.string(name, field.default)  # a choice
    if value not in field.choices:
        raise ConfigError(f"config.{name}", f"{value!r} is not one of {', '.join(field.choices)}")
    return value


def _check_type(service_type: object) -> str:
    if service_type not in SERVICE_TYPES:
        raise ConfigError(
            "service_type",
            f"{service_type!r} is not one of {', '.join(SERVICE_TYPES)}",
        )
    return service_type


def validate_config(service_type: object, config: object, *, name: str) -> dict[str, Any]:
    """
    Check ``config`` for a service of ``service_type`` called ``name``.

    :return: a new dict with every field of the type, defaults filled in.
    :raises ConfigError: naming the first bad field.
    """
    service_type = _check_type(service_type)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("config", f"must be an object, not {_type_name(config)}")
    fields = _Fields(config)
    result = {key: _value(fields, key, field, name) for key, field in FIELDS[service_type].items()}
    fields.reject_unknown(service_type)
    return result


def mask(service_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with every secret that is set replaced by ``"********"``."""
    masked = dict(config)
    for field in SECRET_FIELDS.get(service_type, ()):
        if masked.get(field):
            masked[field] = MASK
    return masked


def merge_secrets(
    service_type: str, new_config: dict[str, Any], old_config: dict[str, Any] | None
) -> dict[str, Any]:
    """
    A copy of ``new_config`` where each secret sent back as ``"********"`` takes
    its value from ``old_config`` (or is dropped when there was none).  Any
    other value, including null or ``""``, replaces the stored secret.
    """
    if not isinstance(new_config, dict):
        return new_config
    merged = dict(new_config)
    old_config = old_config if isinstance(old_config, dict) else {}
    for field in SECRET_FIELDS.get(service_type, ()):
        if merged.get(field) == MASK:
            if old_config.get(field):
                merged[field] = old_config[field]
            else:
                del merged[field]
    return merged
