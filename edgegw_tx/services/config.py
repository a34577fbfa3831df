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

A storage service has a ``backend``: ``filesystem`` (the default: a folder,
``path``) or ``s3`` (a bucket of an S3-compatible server: ``endpoint``,
``bucket``, ``region``, ``access_key``, ``secret_key``, ``addressing_style``).
A field belongs to one backend (``Field.backend``): it is answered as null
under the other, where it must be absent, null, empty or its default (what a
form sends for a field it shows empty).

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

STORAGE_BACKENDS = ("filesystem", "s3")
ADDRESSING_STYLES = ("path", "virtual")
"""How a bucket is named in a request: ``http://host/bucket/key`` or ``http://bucket.host/key``."""
DEFAULT_REGION = "us-east-1"
MAX_ENDPOINT = 2048
ENDPOINT_PATTERN = r"^https?://[^\s/?#@]+(/[^\s?#]*)?$"
"""An S3 ``endpoint``: an http or https URL with a host, no credentials, query or fragment."""
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"
"""An S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens."""
REGION_PATTERN = r"^[a-z0-9][a-z0-9\-]{0,62}$"

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
_PATTERNS = {
    "endpoint": re.compile(ENDPOINT_PATTERN[:-1] + r"\Z"),
    "bucket": re.compile(BUCKET_PATTERN[:-1] + r"\Z"),
    "region": re.compile(REGION_PATTERN[:-1] + r"\Z"),
}
PATTERN_WORDS = {  # the words of a value the pattern refuses, by kind
    "endpoint": "is not an http:// or https:// URL with a host (and no user, query or fragment)",
    "bucket": "is not a bucket name: 3 to 63 lower-case letters, digits, '.' and '-',"
    " starting and ending with a letter or digit",
    "region": "is not a region name: lower-case letters, digits and '-'",
}


@dataclass(frozen=True)
class Field:
    """
    One config field of a service type: the one place its rule is written
    (``validate_config`` applies it, ``admin/schema.py`` publishes it).

    :ivar kind: ``"host"``, ``"text"`` (a non-empty string), ``"optional_text"``
        (a string or null), ``"secret"`` (a string; masked in answers),
        ``"integer"``, ``"boolean"``, ``"choice"`` (one of ``choices``; ``""``
        means the default), ``"path"`` (``check_relative_path``), or
        ``"endpoint"``, ``"bucket"``, ``"region"`` (strings matching
        ``ENDPOINT_PATTERN``, ``BUCKET_PATTERN``, ``REGION_PATTERN``; an
        endpoint may be null).
    :ivar default: the value when absent or null; ``REQUIRED`` when there is
        none. A ``path``'s default is a template of the service's ``{name}``.
    :ivar low: an integer's lowest value.
    :ivar high: an integer's highest value.
    :ivar choices: a ``choice``'s values.
    :ivar backend: the storage ``backend`` the field belongs to (``""``: every
        config of the type has it).
    """

    kind: str
    default: Any = None
    low: int = 0
    high: int = 0
    choices: tuple[str, ...] = ()
    backend: str = ""

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
    "storage": {
        "backend": Field("choice", "filesystem", choices=STORAGE_BACKENDS),
        "path": Field("path", "{name}", backend="filesystem"),
        "endpoint": Field("endpoint", None, backend="s3"),
        "bucket": Field("bucket", REQUIRED, backend="s3"),
        "region": Field("region", DEFAULT_REGION, backend="s3"),
        "access_key": Field("secret", backend="s3"),
        "secret_key": Field("secret", backend="s3"),
        "addressing_style": Field("choice", "path", choices=ADDRESSING_STYLES, backend="s3"),
    },
}
"""Each service type's config fields, in the order a config is answered."""

TOGETHER: dict[str, tuple[str, ...]] = {"storage": ("access_key", "secret_key")}
"""Fields set together or not at all (an S3 key pair; neither: unsigned requests)."""

SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    service_type: tuple(name for name, field in fields.items() if field.kind == "secret")
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
    if field.kind in _PATTERNS:
        value = fields.string(name, None if field.default is REQUIRED else field.default)
        if value is None and field.default is REQUIRED:
            raise ConfigError(f"config.{name}", "is required")
        if value is not None and (len(value) > MAX_ENDPOINT or not _PATTERNS[field.kind].match(value)):
            raise ConfigError(f"config.{name}", f"{value[:80]!r} {PATTERN_WORDS[field.kind]}")
        return value
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
    result: dict[str, Any] = {}
    for key, field in FIELDS[service_type].items():
        if field.backend and field.backend != result.get("backend"):
            _check_other_backend(fields, key, field, result.get("backend"))
            result[key] = None
        else:
            result[key] = _value(fields, key, field, name)
    fields.reject_unknown(service_type)
    together = TOGETHER.get(service_type, ())
    if any(result[name] for name in together) and not all(result[name] for name in together):
        missing = next(name for name in together if not result[name])
        raise ConfigError(f"config.{missing}", f"{' and '.join(together)} are set together (or none of them)")
    return result


def _check_other_backend(fields: _Fields, name: str, field: Field, backend: object) -> None:
    """
    Check that ``name``, a field of another backend than ``backend``, says
    nothing: absent, null, ``""`` or its default (a form's empty field).
    """
    value = fields.get(name)
    if value in (None, "") or (value == field.default and field.kind == "choice"):
        return
    raise ConfigError(
        f"config.{name}",
        f"is a field of the {field.backend!r} backend, and config.backend is {backend!r}"
        f" (set config.backend to {field.backend!r} to use it)",
    )


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
