"""
Checks for the ``args`` of a service call.

Every failure is a ``ServiceError`` of kind ``BadRequest`` whose message names
the action and the argument, e.g. ``redis get: argument 'key' must be a
string, not int``.
"""

from __future__ import annotations

import builtins
from typing import Any, cast

from .errors import ServiceError, bad_request

__all__ = ["Args"]

_MISSING = object()

_JSON_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def _type_name(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


class Args:
    """
    The arguments of one call, read with typed accessors.

    :param where: ``"<service> <action>"``, the start of every message.
    """

    def __init__(self, where: str, args: object):
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise bad_request(f"{where}: args must be an object, not {_type_name(args)}")
        self.where = where
        self._args = args

    def error(self, message: str) -> ServiceError:
        """A BadRequest about this call."""
        return bad_request(f"{self.where}: {message}")

    def _get(self, name: str, default: Any) -> Any:
        value = self._args.get(name, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise self.error(f"missing argument {name!r}")
            return default
        return value

    def _wrong(self, name: str, expected: str, value: object) -> ServiceError:
        return self.error(
            f"argument {name!r} must be {expected}, not {_type_name(value)}"
        )

    def string(self, name: str, default: Any = _MISSING, *, nonempty: bool = False) -> Any:
        """A string argument (``default`` when absent or null, if given)."""
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self._wrong(name, "a string", value)
        if nonempty and not value:
            raise self.error(f"argument {name!r} must not be empty")
        return value

    def integer(self, name: str, *, minimum: int | None = None) -> int:
        """An integer argument (JSON numbers with a fraction are refused)."""
        value = self._get(name, _MISSING)
        if type(value) is not int:
            raise self._wrong(name, "an integer", value)
        if minimum is not None and value < minimum:
            raise self.error(f"argument {name!r} must be at least {minimum}, not {value}")
        return value

    def list(self, name: str, default: Any = _MISSING) -> builtins.list[Any]:
        """A list argument of any JSON values."""
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return cast(builtins.list[Any], value)  # the caller's default, whatever it is
        if not isinstance(value, list):
            raise self._wrong(name, "a list", value)
        return value

    def strings(self, name: str, *, nonempty: bool = False) -> builtins.list[str]:
        """A list of strings."""
        value = self.list(name)
        if nonempty and not value:
            raise self.error(f"argument {name!r} must not be an empty list")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(
                    f"argument {name!r} must be a list of strings;"
                    f" item {index} is {_type_name(item)}"
                )
        return value
