"""
The object storage connector, on the filesystem.

Layout under the service's root ``<data_dir>/services/<path>/``::

    objects/<key>     the bytes, one file per object
    meta/<key>        {"content_type": ...} (the same relative name)
    tmp/              files being written

Keys (``check_key``): 1–1024 characters, ``/``-separated segments, none empty,
``.`` or ``..``, at most 250 bytes each (a file name); no leading ``/``, no
backslash, no control character.  Anything else is a ``StorageError`` naming
the key.  Because keys are paths, one key cannot be both an object and a
folder of others: with ``a`` stored, ``a/b`` is refused (and the other way
round) until ``a`` is deleted.

Every file operation runs in the reactor's thread pool
(``deferToThreadPool(reactor, reactor.getThreadPool(), ...)``).  Each one
resolves its paths with ``realpath`` and refuses any that leaves the root
(and the root must stay inside ``<data_dir>/services/``), so a symlink placed in
the tree cannot lead out.  Writes go to ``tmp/``, are fsynced and renamed into
place, so a reader sees the old object or the new one, never part of one.
Operations on the same key run one after another, in the order they were
called (a get never pairs new bytes with an old content type); different keys
run concurrently.  ``delete`` removes folders left empty.

Actions (docs/ipc.md): ``put`` (``key``, ``data_base64``, ``content_type``,
default ``application/octet-stream``) → ``{"key", "size"}``; ``get`` (``key``)
→ ``{"data_base64", "content_type", "size"}`` or null; ``delete`` (``key``) →
whether it existed; ``list`` (``prefix``, default ``""``) → ``[{"key", "size"}]``
sorted by key.  ``list`` has no limit; its answer must fit in a frame.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, DeferredLock
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from .args import Args
from .errors import STORAGE_ERROR, ServiceError, bad_request

__all__ = ["StorageConnector", "check_key", "check_prefix"]

ACTIONS = ("delete", "get", "list", "put")
MAX_KEY = 1024
MAX_SEGMENT_BYTES = 250
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _storage_error(message: str) -> ServiceError:
    return ServiceError(STORAGE_ERROR, message)


def _check_segments(key: str, segments: list[str], what: str) -> None:
    for segment in segments:
        if segment == "":
            raise _storage_error(f"invalid {what} {key!r}: empty segment")
        if segment in (".", ".."):
            raise _storage_error(f"invalid {what} {key!r}: '{segment}' segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _storage_error(
                f"invalid {what} {key!r}: a segment is longer than"
                f" {MAX_SEGMENT_BYTES} bytes"
            )


def _check_text(key: object, what: str) -> str:
    if not isinstance(key, str):
        raise _storage_error(f"invalid {what}: must be a string")
    if len(key) > MAX_KEY:
        raise _storage_error(f"invalid {what} {key[:40]!r}...: longer than {MAX_KEY} characters")
    if key.startswith("/"):
        raise _storage_error(f"invalid {what} {key!r}: must not start with '/'")
    if "\\" in key:
        raise _storage_error(f"invalid {what} {key!r}: must not contain a backslash")
    if _CONTROL.search(key):
        raise _storage_error(f"invalid {what} {key!r}: must not contain control characters")
    return key


def check_key(key: object) -> str:
    """Return ``key`` if it is a valid object key; raise StorageError otherwise."""
    key = _check_text(key, "key")
    if not key:
        raise _storage_error("invalid key '': must not be empty")
    _check_segments(key, key.split("/"), "key")
    return key


def check_prefix(prefix: object) -> str:
    """
    Return ``prefix`` if it is a valid ``list`` prefix: empty, or the start of a
    key (its last segment may be partial or empty, ``"img/"``).
    """
    prefix = _check_text(prefix, "prefix")
    _check_segments(prefix, prefix.split("/")[:-1], "prefix")
    return prefix


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class StorageConnector:
    """``storage`` calls on one folder."""

    kind = "storage"
    service_type = "storage"
    actions = ACTIONS

    def __init__(
        self,
        config: dict[str, Any],
        *,
        data_dir: str,
        name: str,
        call_timeout: float,
        reactor: Any,
    ):
        self.config = config
        self.name = name
        self.call_timeout = call_timeout
        self._reactor = reactor
        self.services = os.path.join(os.path.abspath(data_dir), "services")
        self.root = os.path.join(self.services, config["path"])
        self._locks: dict[str, DeferredLock] = {}
        self._running: set[Deferred[Any]] = set()
        self._closed = False

    # -- the connector interface --------------------------------------------

    def call(self, action: str, args: object) -> Deferred[Any]:
        a = Args(f"storage {action}", args)
        if action == "put":
            key = check_key(a.string("key"))
            encoded = a.string("data_base64")
            content_type = a.string("content_type", DEFAULT_CONTENT_TYPE)
            if len(content_type) > 255 or _CONTROL.search(content_type):
                raise a.error(
                    "argument 'content_type' must be at most 255 characters"
                    " without control characters"
                )
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise a.error("argument 'data_base64' is not valid base64") from None
            return self._serial(key, self._put, key, data, content_type or DEFAULT_CONTENT_TYPE)
        if action == "get":
            key = check_key(a.string("key"))
            return self._serial(key, self._get, key)
        if action == "delete":
            key = check_key(a.string("key"))
            return self._serial(key, self._delete, key)
        if action == "list":
            prefix = check_prefix(a.string("prefix", ""))
            return self._thread(self._list, prefix)
        raise bad_request(
            f"unknown storage action {action!r} (expected one of {', '.join(ACTIONS)})"
        )

    def ping(self) -> Deferred[float]:
        """Write, read and delete a probe object; fires with the milliseconds taken."""
        return self._thread(self._probe, f".edgegw-probe-{uuid.uuid4().hex}")

    def close(self) -> Deferred[None]:
        """Refuse new calls; fires once the calls in progress finished."""
        self._closed = True
        running = list(self._running)
        return DeferredList(running, consumeErrors=True).addCallback(lambda _: None)

    # -- scheduling (reactor thread) ----------------------------------------

    def _thread(self, func: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self._closed:
            raise ServiceError("ServiceUnavailable", "the storage service is closed")
        reactor = self._reactor
        inner = deferToThreadPool(reactor, reactor.getThreadPool(), func, *args)
        return self._detach(inner)

    def _serial(self, key: str, func: Callable[..., Any], *args: Any) -> Deferred[Any]:
        if self._closed:
            raise ServiceError("ServiceUnavailable", "the storage service is closed")
        reactor = self._reactor
        lock = self._locks.setdefault(key, DeferredLock())
        inner = lock.run(deferToThreadPool, reactor, reactor.getThreadPool(), func, *args)

        def forget(result: Any) -> Any:
            if not lock.locked and not lock.waiting and self._locks.get(key) is lock:
                del self._locks[key]
            return result

        inner.addBoth(forget)
        return self._detach(inner)

    def _detach(self, inner: Deferred[Any]) -> Deferred[Any]:
        """
        A Deferred that follows ``inner`` but whose cancellation (the broker's
        timeout) leaves ``inner``, and so the per-key order, alone.
        """
        self._running.add(inner)
        outer: Deferred[Any] = Deferred()

        def relay(result: Any) -> None:
            self._running.discard(inner)
            if isinstance(result, Failure) and not result.check(ServiceError):
                result = self._describe(result)
            if not outer.called:
                outer.callback(result)

        inner.addBoth(relay)
        return outer

    def _describe(self, failure: Failure) -> Failure:
        error = failure.value
        if isinstance(error, OSError):
            return Failure(_storage_error(f"storage operation failed: {error.strerror or error}"))
        return failure

    # -- file work (pool threads) -------------------------------------------

    def _base(self, name: str) -> str:
        """The real path of ``root/name``, created, checked to stay inside."""
        services = os.path.realpath(self.services)
        root = os.path.realpath(self.root)
        if not _inside(root, services) or root == services:
            raise _storage_error(
                f"the storage folder {self.config['path']!r} resolves outside"
                " the services folder"
            )
        base = os.path.join(root, name)
        os.makedirs(base, exist_ok=True)
        real = os.path.realpath(base)
        if real != base:
            raise _storage_error(f"the storage folder's {name!r} is a link")
        return base

    def _resolve(self, base: str, key: str) -> str:
        path = os.path.join(base, *key.split("/"))
        if not _inside(os.path.realpath(path), base) or os.path.realpath(path) == base:
            raise _storage_error(f"key {key!r} resolves outside the storage folder")
        return path

    def _conflict(self, key: str, error: OSError) -> ServiceError:
        if error.errno in (errno.ENOTDIR, errno.EEXIST):
            return _storage_error(
                f"key {key!r} conflicts with an existing object that is one of"
                " its prefixes"
            )
        if error.errno == errno.EISDIR:
            return _storage_error(
                f"key {key!r} is the folder of other objects (keys starting"
                f" with {key + '/'!r})"
            )
        return _storage_error(f"cannot store {key!r}: {error.strerror or error}")

    def _write_temp(self, tmp: str, data: bytes) -> str:
        fd, path = tempfile.mkstemp(dir=tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(path)
            raise
        return path

    def _place(self, temp: str, dest: str, key: str) -> None:
        """Rename ``temp`` to ``dest``, creating folders (a delete may prune them)."""
        try:
            for attempt in range(3):
                try:
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    os.rename(temp, dest)
                    return
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        except OSError as e:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise self._conflict(key, e) from None

    def _put(self, key: str, data: bytes, content_type: str) -> dict[str, Any]:
        objects, meta, tmp = self._base("objects"), self._base("meta"), self._base("tmp")
        obj_path = self._resolve(objects, key)
        meta_path = self._resolve(meta, key)
        if os.path.isdir(obj_path):
            raise self._conflict(key, IsADirectoryError(errno.EISDIR, "is a directory"))
        meta_bytes = json.dumps({"content_type": content_type}).encode("utf-8")
        temp_meta = self._write_temp(tmp, meta_bytes)
        self._place(temp_meta, meta_path, key)
        temp_data = self._write_temp(tmp, data)
        self._place(temp_data, obj_path, key)
        return {"key": key, "size": len(data)}

    def _get(self, key: str) -> dict[str, Any] | None:
        objects, meta = self._base("objects"), self._base("meta")
        obj_path = self._resolve(objects, key)
        try:
            with open(obj_path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        content_type = DEFAULT_CONTENT_TYPE
        try:
            with open(self._resolve(meta, key), "rb") as f:
                content_type = json.loads(f.read())["content_type"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return {
            "data_base64": base64.b64encode(data).decode("ascii"),
            "content_type": content_type,
            "size": len(data),
        }

    def _prune(self, base: str, path: str) -> None:
        folder = os.path.dirname(path)
        while folder != base and _inside(folder, base):
            try:
                os.rmdir(folder)
            except OSError:
                return
            folder = os.path.dirname(folder)

    def _delete(self, key: str) -> bool:
        objects, meta = self._base("objects"), self._base("meta")
        obj_path = self._resolve(objects, key)
        meta_path = self._resolve(meta, key)
        existed = os.path.isfile(obj_path) and not os.path.islink(obj_path)
        for base, path in ((objects, obj_path), (meta, meta_path)):
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                pass
            self._prune(base, path)
        return existed

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        objects = self._base("objects")
        folder_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._resolve(objects, folder_key) if folder_key else objects
        found: list[dict[str, Any]] = []

        def walk(path: str, key_prefix: str) -> None:
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                return
            for entry in entries:
                key = key_prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                        walk(entry.path, key + "/")
                elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                    found.append({"key": key, "size": entry.stat(follow_symlinks=False).st_size})

        walk(start, folder_key + "/" if folder_key else "")
        found.sort(key=lambda item: item["key"])
        return found

    def _probe(self, key: str) -> float:
        start = time.perf_counter()
        self._put(key, b"edgegw probe", "text/plain")
        got = self._get(key)
        self._delete(key)
        if got is None or base64.b64decode(got["data_base64"]) != b"edgegw probe":
            raise _storage_error("the probe object could not be read back")
        return (time.perf_counter() - start) * 1000.0
