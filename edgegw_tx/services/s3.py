"""
The object storage connector on an S3-compatible server (``backend: s3``).

It answers the same ``call`` frames as the filesystem backend
(``storage.StorageConnector``, docs/ipc.md): ``put``, ``get``, ``delete``,
``list``, with the same key rules (``check_key``), the same per-key order and
the same answers; only where the bytes live differs.  Every node of a cluster
configured with the same bucket sees the same objects.

Requests are made and signed (SigV4) by botocore, a maintained client, in the
reactor's thread pool: the reactor never waits on the network.  The client is
made on first use (botocore reads its service models then, a blocking step),
in a pool thread.  Without ``access_key`` and ``secret_key`` requests are
unsigned (a public bucket): the gateway host's own AWS credentials and
endpoints (its environment, ``~/.aws``) are never picked up.  botocore retries once at most
and times out after the broker's ``call_timeout``, so a thread is not held
much longer than the call it serves.

Errors: a server answer such as ``NoSuchBucket`` or ``SignatureDoesNotMatch``
is a ``StorageError`` carrying the server's code and message; a server that
cannot be reached is ``ServiceUnavailable``.

Differences from the filesystem backend: ``a`` and ``a/b`` can both exist
(keys are names, not paths), and ``delete`` learns whether the key existed
by listing it first (in a cluster, a delete racing another node's may both
say true).
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure

from .errors import SERVICE_UNAVAILABLE, STORAGE_ERROR, ServiceError, one_line
from .storage import DEFAULT_CONTENT_TYPE, StorageConnector

__all__ = ["S3StorageConnector"]

MAX_ATTEMPTS = 2
"""botocore's attempts per request: the first and one retry."""

_MISSING_CODES = ("NoSuchKey", "404", "NotFound")


class S3StorageConnector(StorageConnector):
    """``storage`` calls on one bucket of an S3-compatible server."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        name: str,
        call_timeout: float,
        reactor: Any,
        data_dir: str = "",
    ):
        # The scheduling state of StorageConnector (per-key order, close);
        # its folder (data_dir, path) is not used.
        self.config = config
        self.name = name
        self.call_timeout = call_timeout
        self._reactor = reactor
        self._locks = {}
        self._running = set()
        self._closed = False
        self.bucket: str = config["bucket"]
        self._client_lock = threading.Lock()
        self._s3: Any = None

    # -- the client (pool threads) -------------------------------------------

    def _client(self) -> Any:
        """The botocore S3 client, made on first use."""
        with self._client_lock:
            if self._s3 is None:
                self._s3 = self._make_client()
            return self._s3

    def _make_client(self) -> Any:
        import botocore.session
        from botocore import UNSIGNED
        from botocore.config import Config

        config = self.config
        signed = bool(config["access_key"] and config["secret_key"])
        options = Config(
            region_name=config["region"],
            signature_version="s3v4" if signed else UNSIGNED,
            s3={"addressing_style": config["addressing_style"]},
            connect_timeout=min(self.call_timeout, 5.0),
            read_timeout=self.call_timeout,
            retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        )
        session = botocore.session.Session()
        # The endpoint is the config's (or AWS's for the region), never one the
        # host's environment or ~/.aws/config names (AWS_ENDPOINT_URL_S3).
        session.set_config_variable("ignore_configured_endpoint_urls", True)
        return session.create_client(
            "s3",
            region_name=config["region"],
            endpoint_url=config["endpoint"],
            aws_access_key_id=config["access_key"] if signed else None,
            aws_secret_access_key=config["secret_key"] if signed else None,
            config=options,
        )

    # -- errors ----------------------------------------------------------------

    def _describe(self, failure: Failure) -> Failure:
        """A botocore failure as the ServiceError a handler sees."""
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        error = failure.value
        where = f"the S3 bucket {self.bucket!r}"
        if isinstance(error, ClientError):
            details = error.response.get("Error", {})
            code = details.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = details.get("Message") or ""
            text = f"{where}: {code}" + (f": {message}" if message else "")
            return Failure(ServiceError(STORAGE_ERROR, one_line(text)))
        if isinstance(error, EndpointConnectionError):
            return Failure(ServiceError(SERVICE_UNAVAILABLE, one_line(f"cannot reach {where}: {error}")))
        if isinstance(error, BotoCoreError):
            return Failure(ServiceError(STORAGE_ERROR, one_line(f"{where}: {error}")))
        return super()._describe(failure)

    @staticmethod
    def _missing(error: Exception) -> bool:
        """Whether a botocore error says the object does not exist."""
        from botocore.exceptions import ClientError

        if not isinstance(error, ClientError):
            return False
        return str(error.response.get("Error", {}).get("Code")) in _MISSING_CODES

    # -- object work (pool threads) -------------------------------------------

    def _put(self, key: str, data: bytes, content_type: str) -> dict[str, Any]:
        self._client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        return {"key": key, "size": len(data)}

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            answer = self._client().get_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            if self._missing(e):
                return None
            raise
        with answer["Body"] as body:
            data = body.read()
        return {
            "data_base64": base64.b64encode(data).decode("ascii"),
            "content_type": answer.get("ContentType") or DEFAULT_CONTENT_TYPE,
            "size": len(data),
        }

    def _delete(self, key: str) -> bool:
        client = self._client()
        # Not HEAD: its 404 would not tell a missing key from a missing bucket.
        # The first key starting with ``key`` is ``key`` itself when it exists.
        page = client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        if not any(item["Key"] == key for item in page.get("Contents", ())):
            return False
        client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        found = [
            {"key": item["Key"], "size": item["Size"]}
            for page in pages
            for item in page.get("Contents", ())
        ]
        found.sort(key=lambda item: item["key"])
        return found

    def _probe(self, key: str) -> float:
        self._client()  # made before the clock starts: the latency is the round trips'
        start = time.perf_counter()
        self._put(key, b"edgegw probe", "text/plain")
        try:
            got = self._get(key)
        finally:
            self._delete(key)
        if got is None or base64.b64decode(got["data_base64"]) != b"edgegw probe":
            raise ServiceError(STORAGE_ERROR, "the probe object could not be read back")
        return (time.perf_counter() - start) * 1000.0

    def close(self) -> Deferred[None]:
        """Refuse new calls; once the calls in progress finished, close the client's connections."""
        self._closed = True
        running = list(self._running)

        def closed(_: Any) -> None:
            if self._s3 is not None:
                self._s3.close()

        return DeferredList(running, consumeErrors=True).addCallback(closed)
