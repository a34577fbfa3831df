"""
What the control plane persists, as one interface: ``IStore``.

The management API, the key ring and the worker-uid allocator talk to a store
only through these methods, so another database (PostgreSQL, for several
nodes) is another class that provides ``IStore``, with nothing else to change.
It is a ``zope.interface`` interface rather than a ``typing.Protocol`` so that
tests can check a store (or a fake of one) with ``verifyObject``, which compares
method names and signatures at run time, while mypy (with the mypy-zope
plugin) checks the ``@implementer`` classes statically.

What every store promises:

  - Every method returns a Deferred and never blocks the reactor (unless
    marked otherwise); each call is atomic: it happens entirely or not at all.
  - Records are plain dicts of JSON-compatible values; JSON-valued fields
    (an endpoint's ``settings``, a service's ``config``, a version's
    ``dependencies``) come back decoded, booleans as booleans, and the
    caller never sees the database's types.  Times are ISO 8601 strings
    written by the caller.
  - Failures are the exceptions of ``edgegw_tx.store.errors``, never a
    driver's: ``Conflict`` for a broken uniqueness rule, ``Missing`` for a
    reference to a record that does not exist, and the others named below.
  - ``open`` brings the schema up to date with numbered migrations
    (``edgegw_tx.store.migrations``) and fails with ``StoreTooNew`` for a
    store a newer edgegw wrote.

The methods are grouped by record kind, one interface each (endpoints,
worker uids, versions, services, bindings, domains, collections, API keys,
consumers),
and ``IStore`` is all of them plus the store's own life (open, close). A part
of the control plane that needs one kind may ask for just that interface, and
a test's fake of that part of the store is checked against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

#: One record: column name to value, JSON-valued columns decoded.
Record = dict[str, Any]

#: An endpoint moved to other routes: ``(endpoint_id, domain, path shapes)``, a
#: shape for each of its routes in their order (methods and paths stay).
Move = tuple[str, str, tuple[str, ...]]


class IEndpointStore(Interface):
    """
    Endpoints: one per route (domain, method, path shape). ``services`` on a
    record read back is its bindings, ``{pool_id: service_id}``.
    """

    def create_endpoint(record: Record) -> Deferred[Record]:
        """
        Insert an endpoint; fires with it as read back. ``Conflict`` when
        another endpoint has the same (domain, method, path_shape).
        """

    def get_endpoint(endpoint_id: str) -> Deferred[Record | None]:
        """The endpoint with its bindings as ``services``, or None."""

    def list_endpoints() -> Deferred[list[Record]]:
        """Every endpoint with its ``services``, oldest first (by created_at, then id)."""

    def update_endpoint(endpoint_id: str, fields: Record, revision: int | None = None) -> Deferred[Record | None]:
        """
        Change the given columns only; fires with the new record (None if there
        is no such endpoint). ``Conflict`` when it would take another's route;
        raises ValueError at once for a column endpoints do not have.
        ``revision`` (an ``If-Match``): change it only if the record is still
        at that revision, else ``Stale`` and nothing changes.
        """

    def delete_endpoint(endpoint_id: str, revision: int | None = None) -> Deferred[bool]:
        """
        Delete the endpoint with its bindings, versions and worker uid; fires
        with whether there was one. ``revision`` as for ``update_endpoint``.
        """


class IWorkerUidStore(Interface):
    """
    Each endpoint's own uid for its workers (docs/isolation.md), drawn once
    and kept until the endpoint is deleted.
    """

    def allocate_worker_uid(
        endpoint_id: str, first: int, last: int, busy: Callable[[], Iterable[int]] | None = None
    ) -> Deferred[int]:
        """
        The endpoint's uid: the one it has, else the lowest of first..last
        that no endpoint has and ``busy()`` (if given; called where the store
        does its work, off the reactor) does not name, now recorded. ``NoFreeUid`` when
        none is left, ``Missing`` for an unknown endpoint.
        """

    def worker_uids() -> Deferred[dict[str, int]]:
        """``{endpoint_id: uid}`` of every endpoint that has one."""


class IVersionStore(Interface):
    """
    Every successful compile of an endpoint, by digest, and which digests
    nothing uses any more (their binaries may go).
    """

    def record_version(record: Record, cached: bool = False) -> Deferred[None]:
        """
        Record a compile (endpoint_id, digest, code, dependencies,
        compile_seconds, created_at). The same digest again makes that
        version the newest; when ``cached`` (no compiler ran) it keeps the
        ``compile_seconds`` recorded before.
        """

    def list_versions(endpoint_id: str) -> Deferred[list[Record]]:
        """The endpoint's versions, most recently recorded first."""

    def prune_versions(
        endpoint_id: str, keep: int, protected: Iterable[str] = ()
    ) -> Deferred[list[str]]:
        """
        Keep the ``keep`` newest versions of the endpoint and those whose digest
        is its ``deployed`` or ``artifact`` or in ``protected``; delete the
        others. Fires with the deleted digests nothing uses any more (see
        ``unused_digests``): the artifacts that may go.
        """

    def unused_digests(digests: Iterable[str], protected: Iterable[str] = ()) -> Deferred[list[str]]:
        """
        Those of ``digests`` (in order, once each) not in ``protected`` that no
        endpoint deploys or has compiled and no version keeps: artifacts are
        content-addressed, so one may serve several endpoints.
        """


class IServiceStore(Interface):
    """
    Services: the connectors' configurations, names unique ignoring case.
    """

    def create_service(record: Record) -> Deferred[Record]:
        """Insert a service; ``Conflict`` when its name is taken (ignoring case)."""

    def get_service(service_id: str) -> Deferred[Record | None]:
        """The service (``config`` decoded, secrets in clear), or None."""

    def list_services() -> Deferred[list[Record]]:
        """Every service, oldest first."""

    def update_service(service_id: str, fields: Record, revision: int | None = None) -> Deferred[Record | None]:
        """Like ``update_endpoint``, for a service (``Conflict`` on a taken name)."""

    def delete_service(service_id: str, revision: int | None = None) -> Deferred[bool]:
        """
        Fires with whether there was one; ``ServiceInUse`` (naming each
        binding) while endpoints are bound to it; ``Stale`` as for ``update_endpoint``.
        """


class IBindingStore(Interface):
    """
    Bindings: the name (``pool_id``) under which an endpoint's handlers reach
    a service.
    """

    def bind(endpoint_id: str, pool_id: str, service_id: str, created_at: str) -> Deferred[str | None]:
        """
        Bind the service to the endpoint under ``pool_id``, replacing what that
        name was bound to; fires with the service id it replaced, or None.
        ``Missing`` when the endpoint or the service does not exist.
        """

    def unbind(endpoint_id: str, pool_id: str) -> Deferred[str | None]:
        """Remove a binding; fires with the service id it was bound to, or None."""

    def list_bindings() -> Deferred[list[Record]]:
        """Every binding (endpoint_id, pool_id, service_id, created_at), by endpoint then name."""


class IDomainStore(Interface):
    """
    Domains. An endpoint refers to its domain by host and to its collection
    by id; its ``domain`` and ``path_shape`` are those of the route it is
    served at, so ``moves`` (``(endpoint_id, domain, path_shape)``) are
    applied with the domain or collection change that causes them, atomically.
    """

    def create_domain(record: Record) -> Deferred[Record]:
        """Insert a domain; ``Conflict`` when its host is taken."""

    def get_domain(domain_id: str) -> Deferred[Record | None]:
        """The domain, or None."""

    def get_domain_by_host(host: str) -> Deferred[Record | None]:
        """The domain of ``host``, or None."""

    def list_domains() -> Deferred[list[Record]]:
        """Every domain, oldest first."""

    def update_domain(
        domain_id: str, fields: Record, moves: Sequence[Move] = (), revision: int | None = None
    ) -> Deferred[Record | None]:
        """
        Change some columns and apply ``moves``, all or nothing; fires with the
        new record. ``Conflict`` when the host is taken, ``RouteClash`` when a
        move lands on another endpoint's route; ``Stale`` as for ``update_endpoint``.
        """

    def delete_domain(domain_id: str, revision: int | None = None) -> Deferred[bool]:
        """Fires with whether there was one; ``InUse`` while endpoints or collections use it; ``Stale``."""


class ICollectionStore(Interface):
    """
    Collections: a base path and a domain for their endpoints (``moves`` as
    for ``IDomainStore``).
    """

    def create_collection(record: Record) -> Deferred[Record]:
        """Insert a collection; ``Missing`` when its ``domain_id`` names no domain."""

    def get_collection(collection_id: str) -> Deferred[Record | None]:
        """The collection, or None."""

    def list_collections(domain_id: str | None = None) -> Deferred[list[Record]]:
        """Every collection (of ``domain_id`` only, when given), oldest first."""

    def update_collection(
        collection_id: str, fields: Record, moves: Sequence[Move] = (), revision: int | None = None
    ) -> Deferred[Record | None]:
        """Like ``update_domain``; also ``Missing`` when a new ``domain_id`` names no domain."""

    def delete_collection(collection_id: str, revision: int | None = None) -> Deferred[bool]:
        """Fires with whether there was one; ``InUse`` while endpoints are in it; ``Stale``."""


class IKeyStore(Interface):
    """
    API keys: only their hashes are stored.
    """

    def add_key(record: Record) -> Deferred[None]:
        """Insert a key (id, name, scope, key_hash, created_at); ``Conflict`` on a taken id or hash."""

    def list_keys() -> Deferred[list[Record]]:
        """Every key, oldest first, with ``last_used_at`` (None when never used)."""

    def get_key(key_id: str) -> Deferred[Record | None]:
        """The key, or None."""

    def add_first_key(record: Record) -> Deferred[bool]:
        """
        Insert ``record`` only if the store has no key at all, atomically (two
        nodes starting at once: one wins); fires with whether it was inserted.
        """

    def delete_key(key_id: str, revision: int | None = None) -> Deferred[Record]:
        """
        Delete a key; fires with its record. ``Missing`` when there is none,
        ``LastAdminKey`` when it is the only ``admin`` key (checked atomically,
        so two concurrent deletes cannot both pass); ``Stale`` as for ``update_endpoint``.
        """

    def touch_keys(last_used: Mapping[str, str]) -> Deferred[None]:
        """Record ``{key_id: last_used_at}``; ids of deleted keys are ignored."""


class IConsumerStore(Interface):
    """
    Consumers of the gateway's routes (an ``api_key`` policy): names unique
    ignoring case, and their API keys, only their hashes stored.  A consumer
    read back carries ``keys``: ``[{"id", "key_hash", "created_at"}]``, oldest first.
    """

    def create_consumer(record: Record) -> Deferred[Record]:
        """Insert a consumer (id, name, enabled, created_at, updated_at); ``Conflict`` on a taken name."""

    def get_consumer(consumer_id: str) -> Deferred[Record | None]:
        """The consumer with its ``keys``, or None."""

    def list_consumers() -> Deferred[list[Record]]:
        """Every consumer with its ``keys``, oldest first."""

    def update_consumer(consumer_id: str, fields: Record, revision: int | None = None) -> Deferred[Record | None]:
        """Like ``update_endpoint``, for a consumer (``Conflict`` on a taken name)."""

    def delete_consumer(consumer_id: str, revision: int | None = None) -> Deferred[bool]:
        """Delete a consumer with its keys; fires with whether there was one; ``Stale``."""

    def add_consumer_key(record: Record) -> Deferred[Record]:
        """
        Insert a key (id, consumer_id, key_hash, created_at); fires with it.
        ``Missing`` for an unknown consumer, ``Conflict`` on a taken id or hash.
        """

    def delete_consumer_key(consumer_id: str, key_id: str) -> Deferred[bool]:
        """Delete one of the consumer's keys; fires with whether it had it."""


class IChangeLog(Interface):
    """
    Every change of the configuration, one row each, numbered by a revision
    that only grows (in commit order): how the nodes of a cluster learn what
    another node changed. The store writes the rows itself (triggers), in the
    transaction of the change, for endpoints, services, bindings, domains,
    collections and API keys; each such record carries the revision of its
    last change as ``revision`` (an API ``ETag``).
    """

    def changes_since(revision: int) -> Deferred[Record]:
        """
        ``{"revision": newest, "changes": [{"revision", "kind", "record_id"}, ...],
        "complete": bool}``: the changes after ``revision``, oldest first;
        ``complete`` is False when some of them were pruned (the caller then
        reloads everything). ``kind`` is ``endpoint``, ``service``,
        ``binding`` (``record_id``: the endpoint's), ``domain``,
        ``collection``, ``key`` or ``consumer`` (a consumer's keys' changes
        too, ``record_id``: the consumer's).
        """

    def prune_changes(keep: int) -> Deferred[int]:
        """Delete all but the ``keep`` newest change rows; fires with how many went."""


class INodeStore(Interface):
    """The nodes of a cluster, each writing its own row (a heartbeat)."""

    def heartbeat(node: Record) -> Deferred[None]:
        """
        Insert or update the node's row: ``name``, ``address``,
        ``admin_address``, ``version``, ``started_at``, ``workers``
        (``{endpoint_id: count}``). ``last_seen`` is the store's own clock,
        so the nodes' clocks need not agree.
        """

    def list_nodes() -> Deferred[list[Record]]:
        """Every node's row, by name, with ``last_seen`` and ``seconds_since_seen`` (by the store's clock)."""

    def remove_node(name: str) -> Deferred[bool]:
        """Forget a node; fires with whether there was one."""


class IArtifactStore(Interface):
    """
    Compiled binaries shared by the nodes of a cluster, by digest, and the
    claims that make one node compile a digest while the others wait.
    """

    def put_artifact(digest: str, data: bytes, metadata: Record, node: str) -> Deferred[None]:
        """Store a binary (its sha256 with it); storing a digest already there changes nothing."""

    def get_artifact(digest: str) -> Deferred[Record | None]:
        """``{"digest", "sha256", "size", "data" (bytes), "metadata", "node", "created_at"}``, or None."""

    def has_artifact(digest: str) -> Deferred[bool]:
        """Whether the binary of ``digest`` is stored."""

    def delete_artifacts(digests: Iterable[str]) -> Deferred[None]:
        """Delete the stored binaries of ``digests`` (those there)."""

    def claim_build(digest: str, node: str, stale_after: float) -> Deferred[str | None]:
        """
        Claim the compile of ``digest`` for ``node``: fires with None when
        ``node`` holds the claim now, else with the name of the node that
        does. A claim older than ``stale_after`` seconds (its node died) is
        taken over.
        """

    def release_build(digest: str, node: str) -> Deferred[None]:
        """Give up ``node``'s claim on ``digest`` (if it holds it)."""


class IStore(
    IEndpointStore,
    IWorkerUidStore,
    IVersionStore,
    IServiceStore,
    IBindingStore,
    IDomainStore,
    ICollectionStore,
    IKeyStore,
    IConsumerStore,
    IChangeLog,
    INodeStore,
    IArtifactStore,
):
    """
    The gateway's configuration as a whole: every record kind above, and
    the store's own life.
    """

    shared = Attribute(
        "True when several gateways may use the store at once (PostgreSQL): the"
        " cluster machinery (change log follower, heartbeats, shared binaries) runs."
    )
    where = Attribute("The store, for messages: a path or a URI without its password.")

    def open() -> Deferred[None]:
        """
        Make the store usable: create it, or bring an existing one up to this
        code's schema (all pending migrations in one transaction). Fails with
        ``StoreTooNew`` when the store has migrations this code does not know,
        ``MigrationFailed`` when one fails (nothing changed).
        """

    def close() -> None:
        """Release the store's connections; no call may follow."""


class IClusterStore(IStore):
    """
    A store several gateways share (PostgreSQL). It may be offline: a node
    that starts while the database is unreachable serves the configuration it
    last saw (``save_snapshot``), and writes fail with ``StoreUnavailable``
    until the database answers again.
    """

    online = Attribute("False while the database is unreachable and reads come from the last-known snapshot.")

    def save_snapshot(path: str) -> Deferred[int]:
        """
        Write the configuration as it is now (one consistent read) to ``path``
        (a SQLite file, replaced atomically); fires with its revision.
        """

    def snapshot_revision() -> int | None:
        """While offline, the revision of the snapshot being served; else None."""

    def when_online(callback: Callable[[], object]) -> None:
        """
        Call ``callback()`` each time the store, offline, reaches its database
        again (then it is ``online``, migrated and serving writes): the node
        catches up from ``snapshot_revision`` to the database's revision.
        """
