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
refused.  The fields (spec/API.md):

======== ================================================================
sqlite   ``path`` (``"<name>.sqlite3"``), ``create_if_missing`` (true)
postgres ``host``, ``port`` (5432), ``database``, ``username``, ``password``
         (null), ``ssl_mode`` (``"prefer"``), ``pool_size`` (10)
redis    ``host``, ``port`` (6379), ``password`` (null), ``username`` (null),
         ``database`` (0), ``use_tls`` (false), ``pool_size`` (10)
storage  ``path`` (``"<name>"``)
======== ================================================================

``host``, ``database`` and ``username`` of postgres and ``host`` of redis are
required.  Types are strict: a port is a JSON integer, not ``"5432"``.

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
from typing import Any

__all__ = [
    "MASK",
    "SECRET_FIELDS",
    "SERVICE_TYPES",
    "ConfigError",
    "check_relative_path",
    "mask",
    "merge_secrets",
    "validate_config",
]

SERVICE_TYPES = ("sqlite", "postgres", "redis", "storage")

MASK = "********"

SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "sqlite": (),
    "postgres": ("password",),
    "redis": ("password",),
    "storage": ("access_key", "secret_key"),
}

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

S3_FIELDS = ("endpoint", "bucket", "access_key", "secret_key", "region")

MAX_POOL_SIZE = 100

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST = re.compile(r"[A-Za-z0-9._:\-\[\]%]+\Z")


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
    if len(path) > 1024:
        raise ConfigError(field, "must be at most 1024 characters")
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
        if len(segment.encode("utf-8")) > 240:
            raise ConfigError(field, f"{path!r} has a segment longer than 240 bytes")
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
        if len(value) > 253 or not _HOST.match(value):
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


def _sqlite(fields: _Fields, name: str) -> dict[str, Any]:
    return {
        "path": _default_path(fields, f"{name}.sqlite3"),
        "create_if_missing": fields.boolean("create_if_missing", True),
    }


def _postgres(fields: _Fields, name: str) -> dict[str, Any]:
    ssl_mode = fields.string("ssl_mode", "prefer")
    if ssl_mode not in SSL_MODES:
        raise ConfigError(
            "config.ssl_mode",
            f"{ssl_mode!r} is not one of {', '.join(SSL_MODES)}",
        )
    return {
        "host": fields.host(),
        "port": fields.integer("port", 5432, 1, 65535),
        "database": fields.string("database"),
        "username": fields.string("username"),
        "password": fields.secret("password"),
        "ssl_mode": ssl_mode,
        "pool_size": fields.integer("pool_size", 10, 1, MAX_POOL_SIZE),
    }


def _redis(fields: _Fields, name: str) -> dict[str, Any]:
    return {
        "host": fields.host(),
        "port": fields.integer("port", 6379, 1, 65535),
        "password": fields.secret("password"),
        "username": fields.string("username", None),
        "database": fields.integer("database", 0, 0, 2**31 - 1),
        "use_tls": fields.boolean("use_tls", False),
        "pool_size": fields.integer("pool_size", 10, 1, MAX_POOL_SIZE),
    }


def _storage(fields: _Fields, name: str) -> dict[str, Any]:
    return {"path": _default_path(fields, name)}


_VALIDATORS = {
    "sqlite": _sqlite,
    "postgres": _postgres,
    "redis": _redis,
    "storage": _storage,
}


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
    result = _VALIDATORS[service_type](fields, name)
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
