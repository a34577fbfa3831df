"""
Per-endpoint network policy, ``settings.network`` (docs/isolation.md, "Network policy").

Three policies:

  - ``"none"`` (the default): the worker's launcher gives it a network
    namespace of its own with only a loopback (bubblewrap's ``--unshare-net``,
    ``edgegw_tx.workers.isolation``); nothing here is needed;
  - ``"outbound"``: the internet, but not the host's loopback, not the host's
    own addresses and not the private ranges (``BLOCKED_RANGES``);
  - a list of ``"host:port"``: only those (TCP and UDP), a host being a name
    (resolved by the gateway when the endpoint's namespace is prepared), an
    IPv4 address or an ``[IPv6]`` address.

Why this mechanism: the endpoint gets a named network namespace
(``ip netns add``) whose only way out is Debian's ``pasta`` (package passt), a
userspace forwarder that turns the namespace's packets into ordinary
connections the gateway's host makes: no veth, no host routing, no
``net.ipv4.ip_forward``, no NAT rules on the host. ``pasta`` runs with no port
forwarding in either direction (``-t/-u/-T/-U none``: nothing reaches the
worker from outside, and the namespace's loopback is not the host's) and
``--no-map-gw`` (the gateway address is not the host). The policy itself is
an nftables table inside the namespace, loaded before ``pasta`` connects it
(so there is never a moment without it), filtering by destination before
anything leaves: the worker has no ``CAP_NET_ADMIN`` there (bubblewrap drops
every capability) and cannot change it.  (Debian 12's ``pasta`` cannot enter
the namespace as ``nobody``, so it runs as root, locked down by itself:
``no_new_privs``, seccomp, its own mount namespace, capabilities dropped.)

The namespace is shared by the endpoint's workers (and by a pool replacing
another on the same policy): ``NetworkNamespaces.acquire`` prepares it for
the first, ``NetworkNamespaces.release`` tears it down after the last.  Its
name carries a tag of the gateway (its data directory) and a digest of the
policy, so two gateways never touch each other's namespaces and a changed
policy gets a fresh namespace while the old workers drain.  At start the
gateway deletes what a crashed run of itself left (``clear_leftovers``);
``pasta`` quits by itself when its namespace is deleted.

Every command runs as a child of the reactor; a failure is a
``NetworkError`` naming the command and what it wrote on stderr.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredList, FirstError, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.error import ProcessTerminated
from twisted.internet.interfaces import IHostnameResolver, IProcessTransport, IResolutionReceiver
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .. import hostcommands
from ..hostcommands import TOOL_PATH, ProcessOutput

# -- the policy: written once, checked by the API, described by OpenAPI ---------

NONE = "none"
OUTBOUND = "outbound"
POLICIES = (NONE, OUTBOUND)
DEFAULT_POLICY = NONE
MAX_ALLOWED = 64
MAX_NAME = 253
# Never reachable with "outbound", nor with an allow-list (with the host's own
# addresses, found when the namespace is prepared): loopback, the private and
# shared ranges, link-local, "this network", and multicast and broadcast
# (pasta would send them from the host, onto its own network).
BLOCKED_RANGES = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_IPV6 = r"\[[0-9A-Fa-f:.]{2,45}\]"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The last label starts with a letter, so a name never looks like an address.
_NAME = rf"({_LABEL}\.)*[A-Za-z]([A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
ALLOW_ENTRY_PATTERN = rf"^({_IPV4}|{_IPV6}|{_NAME}):{_PORT}$"
"""One allow-list entry, ``host:port``; the OpenAPI document uses it as it is."""
MAX_ENTRY = MAX_NAME + len(":65535")
_ALLOW_ENTRY = re.compile(ALLOW_ENTRY_PATTERN)

Policy = Union[str, list[str]]

NETNS_PREFIX = "edgegw-"
NETNS_DIR = "/run/netns"
TOOLS = {"ip": "iproute2", "nft": "nftables", "pasta": "passt", "nsenter": "util-linux"}
READY_TIMEOUT = 10.0
COMMAND_TIMEOUT = 10.0


class PolicyError(ValueError):
    """A ``settings.network`` value is not a policy; ``where`` is the index of a bad entry, if any."""

    def __init__(self, problem: str, where: int | None = None):
        super().__init__(problem)
        self.problem = problem
        self.where = where


class NetworkError(Exception):
    """An endpoint's network namespace could not be prepared or removed: says which command and why."""


def check_entry(entry: Any) -> str:
    """
    One allow-list entry, normalised (names lower-case, IPv6 compressed).

    :raises ValueError: saying what is wrong with it.
    """
    if not isinstance(entry, str):
        raise ValueError("must be a string \"host:port\"")
    host, colon, port = entry.rpartition(":")
    if not colon:
        raise ValueError(f"{entry!r} has no ':port'")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    if len(host) > MAX_NAME:
        raise ValueError(f"{entry!r}: the host is longer than {MAX_NAME} characters")
    if not _ALLOW_ENTRY.fullmatch(entry):
        raise ValueError(
            f"{entry!r} is not host:port (a host name, an IPv4 address or an [IPv6] address)"
        )
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{entry!r}: {host} is not an IPv6 address")
        return f"[{address.compressed}]:{int(port)}"
    return f"{host.lower()}:{int(port)}"


def check_policy(value: Any) -> Policy:
    """
    ``value`` as a policy: ``"none"``, ``"outbound"``, or a list of 1 to
    ``MAX_ALLOWED`` ``host:port`` entries (normalised, duplicates dropped).

    :raises PolicyError: saying what is wrong, and where in a list.
    """
    if isinstance(value, str):
        if value in POLICIES:
            return value
    elif isinstance(value, list):
        if not value:
            raise PolicyError('must list at least one "host:port" (or be "none")')
        if len(value) > MAX_ALLOWED:
            raise PolicyError(f"lists {len(value)} destinations; at most {MAX_ALLOWED}")
        entries: list[str] = []
        for index, entry in enumerate(value):
            try:
                entry = check_entry(entry)
            except ValueError as e:
                raise PolicyError(str(e), index)
            if entry not in entries:
                entries.append(entry)
        return entries
    raise PolicyError('must be "none", "outbound" or a list of "host:port"')


# -- the rules ------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """An allowed address and port."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int


def _collapsed(networks: Sequence[str], version: int) -> list[str]:
    """The networks of one IP version merged: nftables refuses overlapping elements in a set."""
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    if version == 4:
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        return [str(n) for n in ipaddress.collapse_addresses(v4)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [str(n) for n in ipaddress.collapse_addresses(v6)]


def ruleset(policy: Policy, destinations: Sequence[Destination], host_addresses: Sequence[str]) -> str:
    """
    The nftables table loaded inside an endpoint's namespace: its own
    loopback always; then never the blocked ranges nor the host's own
    addresses; then everything (``"outbound"``) or only ``destinations``.
    Refused packets are rejected, so a connect fails at once instead of
    hanging.
    """
    blocked = list(BLOCKED_RANGES) + list(host_addresses)
    lines = [
        "table inet edgegw {",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
        '    oifname "lo" accept',
        # The kernel's own neighbour discovery, or IPv6 cannot work at all.
        "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept",
    ]
    for family, version in (("ip", 4), ("ip6", 6)):
        ranges = _collapsed(blocked, version)
        if ranges:
            lines.append(f"    {family} daddr {{ {', '.join(ranges)} }} reject with icmpx admin-prohibited")
    if policy != OUTBOUND:
        for family, version in (("ip", 4), ("ip6", 6)):
            allowed = sorted(
                {f"{d.address} . {d.port}" for d in destinations if d.address.version == version}
            )
            if allowed:
                lines.append(
                    f"    meta l4proto {{ tcp, udp }} {family} daddr . th dport {{ {', '.join(allowed)} }} accept"
                )
        lines.append("    reject with icmpx admin-prohibited")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def host_addresses(ip_json: bytes) -> list[str]:
    """The host's own addresses in ``ip -j addr show``'s output."""
    addresses = []
    for link in json.loads(ip_json or b"[]"):
        for info in link.get("addr_info", []):
            local = info.get("local")
            if local:
                addresses.append(local)
    return addresses


def policy_digest(policy: Policy) -> str:
    """A short digest of a policy, in its namespace's name."""
    return hashlib.sha256(json.dumps(policy).encode()).hexdigest()[:8]


def gateway_tag(data_dir: str) -> str:
    """A short tag of the gateway (its data directory) in its namespaces' names."""
    return hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:6]


# -- running the commands -------------------------------------------------------


def _command(argv: Sequence[str]) -> str:
    """An argv as the one line an error message shows."""
    return " ".join(argv)


def _stderr_text(data: bytes) -> str:
    """What a tool said, without pasta's complaints that there is no syslog."""
    lines = data.decode("utf-8", "replace").splitlines()
    return " / ".join(x.strip() for x in lines if x.strip() and not x.startswith("Failed to send"))


def run(reactor: Any, argv: Sequence[str], stdin: bytes = b"", timeout: float = COMMAND_TIMEOUT) -> Deferred[bytes]:
    """Run ``argv`` (an absolute path first); fires with its stdout, or fails with a ``NetworkError`` naming it."""

    def check(output: ProcessOutput) -> bytes:
        if output.code == 0:
            return output.stdout
        how = f"exit {output.code}" if output.code is not None else f"signal {output.signal}"
        said = _stderr_text(output.stderr) or "no message"
        raise NetworkError(f"{_command(argv)} failed ({how}): {said}")

    d = hostcommands.run(reactor, argv, {"PATH": TOOL_PATH}, "/", timeout, stdin)
    return d.addCallback(check)


def _first_failure(failure: Failure) -> Failure:
    """The failure inside gatherResults' FirstError."""
    error = failure.value
    assert isinstance(error, FirstError), "gatherResults fails with FirstError"
    return error.subFailure


class _Pasta(ProcessProtocol):
    """
    ``pasta`` in the foreground: ``ready`` fires when it has written its pid on
    fd 3 (it does once the namespace is configured), ``ended`` when it exits.
    """

    # Set by the reactor before connectionMade (ProcessProtocol says Optional).
    transport: IProcessTransport
    log = Logger()

    def __init__(self, argv: Sequence[str], namespace: str):
        self.argv = list(argv)
        self.namespace = namespace
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        # Set when the namespace is being removed: an end before that is worth a log line.
        self.removing = False
        self._err: list[bytes] = []

    def connectionMade(self) -> None:
        self.transport.closeStdin()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 2 and not self.ready.called:  # kept for the error message; later, not kept at all
            self._err.append(data)
        elif fd == 3 and not self.ready.called:
            self.ready.callback(None)

    def processEnded(self, reason: Failure) -> None:
        if self.ready.called and not self.removing:
            self.log.error(
                "pasta of network namespace {name} ended ({reason}): its workers have no network now",
                name=self.namespace,
                reason=reason.value,
            )
        if not self.ready.called:
            exc = reason.value
            how = f"exit {getattr(exc, 'exitCode', None)}" if isinstance(exc, ProcessTerminated) else "it exited"
            said = _stderr_text(b"".join(self._err)) or "no message"
            self.ready.errback(NetworkError(f"{_command(self.argv)} failed ({how}): {said}"))
        self.ended.callback(None)


@implementer(IResolutionReceiver)
class _Addresses:
    """Collects what a hostname resolution finds."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.done: Deferred[list[str]] = Deferred()

    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        if address.host not in self.found:
            self.found.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.found)


def resolve(resolver: IHostnameResolver, policy: Policy) -> Deferred[list[Destination]]:
    """
    An allow-list's destinations: addresses as they are, names resolved now
    (every address a name has, IPv4 and IPv6).

    :raises NetworkError: (in the Deferred) a name that resolves to nothing.
    """
    if not isinstance(policy, list):
        return succeed([])
    pending: list[Deferred[list[Destination]]] = []
    for entry in policy:
        text, _, port_text = entry.rpartition(":")
        host, port = text.strip("[]"), int(port_text)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            pending.append(_resolved(resolver, host, port, entry))
        else:
            pending.append(succeed([Destination(address, port)]))
    d = gatherResults(pending, consumeErrors=True)
    d.addErrback(_first_failure)  # the first NetworkError itself
    return d.addCallback(lambda lists: [one for found in lists for one in found])


def _resolved(resolver: IHostnameResolver, host: str, port: int, entry: str) -> Deferred[list[Destination]]:
    """Every address of ``host``, with ``port``."""
    receiver = _Addresses()
    resolver.resolveHostName(receiver, host, port, addressTypes=[IPv4Address, IPv6Address])

    def found(addresses: list[str]) -> list[Destination]:
        if not addresses:
            raise NetworkError(f"settings.network: the host {host!r} of {entry!r} does not resolve")
        return [Destination(ipaddress.ip_address(a), port) for a in addresses]

    return receiver.done.addCallback(found)


# -- the namespaces -------------------------------------------------------------


def _after(d: Deferred[Any]) -> Deferred[None]:
    """A Deferred firing (with None) when ``d`` fires, leaving ``d``'s result alone."""
    after: Deferred[None] = Deferred()

    def fire(result: Any) -> Any:
        after.callback(None)
        return result

    d.addBoth(fire)
    return after


@dataclass
class _Held:
    """A namespace prepared (or being prepared), how many pools hold it, how its preparation ended."""

    name: str
    users: int = 0
    settled: bool = False
    failure: Failure | None = None
    waiters: list[Deferred[None]] = field(default_factory=list)
    pasta: _Pasta | None = None

    def settle(self, result: Any) -> None:
        """The preparation ended: tell every waiter."""
        self.settled = True
        self.failure = result if isinstance(result, Failure) else None
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if self.failure is not None:
                waiter.errback(self.failure)
            else:
                waiter.callback(None)

    def when_settled(self) -> Deferred[None]:
        """Fires when the preparation has ended, failing as it did."""
        if self.settled:
            return fail(self.failure) if self.failure is not None else succeed(None)
        waiter: Deferred[None] = Deferred()
        self.waiters.append(waiter)
        return waiter


class NetworkNamespaces:
    """
    The network namespaces of this gateway's endpoints whose policy is not
    ``"none"``: prepared on first use, removed after the last (see the
    module docstring).
    """

    log = Logger()

    def __init__(
        self,
        tag: str,
        reactor: Any = None,
        resolver: IHostnameResolver | None = None,
        tool_path: str = TOOL_PATH,
    ):
        """
        :param tag: this gateway's part of the names (``gateway_tag``).
        :param resolver: resolves allow-list names (the reactor's by default).
        """
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.resolver = resolver if resolver is not None else reactor.nameResolver
        self.tag = tag
        self._tool_path = tool_path
        self._held: dict[str, _Held] = {}
        # name -> the removal under way: a new preparation of the name waits for it
        self._removing: dict[str, Deferred[None]] = {}

    # names and argv

    def name(self, endpoint_id: str, policy: Policy) -> str:
        """The namespace of an endpoint under a policy: ``edgegw-<tag>-<id>-<policy digest>``."""
        short = re.sub(r"[^A-Za-z0-9]", "", endpoint_id)[:12]
        return f"{NETNS_PREFIX}{self.tag}-{short}-{policy_digest(policy)}"

    def prefix(self, endpoint_id: str, policy: Policy) -> list[str]:
        """
        The argv put before the worker's launcher: ``nsenter`` into the
        endpoint's namespace; empty for ``"none"`` (the launcher unshares).
        """
        if policy == NONE:
            return []
        path = os.path.join(NETNS_DIR, self.name(endpoint_id, policy))
        # Not found: acquire() fails naming it before any worker starts.
        nsenter = shutil.which("nsenter", path=self._tool_path) or "nsenter"
        return [nsenter, f"--net={path}", "--"]

    def _tool(self, name: str) -> str:
        found = shutil.which(name, path=self._tool_path)
        if found is None:
            raise NetworkError(
                f"settings.network needs {name} (Debian package {TOOLS[name]}), not found in"
                f" {self._tool_path}: run tools/setup-sandbox as root"
            )
        return found

    def names(self) -> list[str]:
        """The namespaces held now."""
        return sorted(self._held)

    # holding a namespace

    def acquire(self, endpoint_id: str, policy: Policy) -> Deferred[list[str]]:
        """
        The endpoint's namespace for ``policy``, prepared if no pool holds it
        yet; fires with ``prefix`` once it is ready, or fails with a
        ``NetworkError`` (having released its hold).  Pair with ``release``.
        """
        if policy == NONE:
            return succeed([])
        name = self.name(endpoint_id, policy)
        held = self._held.get(name)
        if held is None:
            held = self._held[name] = _Held(name)
            removing = self._removing.get(name)
            d = _after(removing) if removing is not None else succeed(None)
            d.addCallback(lambda _: self._prepare(held, policy))
            d.addBoth(held.settle)
        held.users += 1

        def failed(failure: Failure) -> Deferred[Any]:
            return self.release(endpoint_id, policy).addBoth(lambda _: failure)

        return held.when_settled().addCallbacks(lambda _: self.prefix(endpoint_id, policy), failed)

    def release(self, endpoint_id: str, policy: Policy) -> Deferred[None]:
        """One holder less; the last one removes the namespace (fires once it is gone)."""
        if policy == NONE:
            return succeed(None)
        name = self.name(endpoint_id, policy)
        held = self._held.get(name)
        if held is None:
            return succeed(None)
        held.users -= 1
        if held.users > 0:
            return succeed(None)
        del self._held[name]
        # After the preparation ended; a failed one removed what it made.
        d = held.when_settled().addCallbacks(lambda _: self._remove(held), lambda _: None)
        self._removing[name] = d

        def forget(result: Any) -> Any:
            if self._removing.get(name) is d:
                del self._removing[name]
            return result

        return d.addBoth(forget)

    def close(self) -> Deferred[None]:
        """Remove every namespace still held (the gateway stops)."""
        held = list(self._held.values())
        self._held.clear()
        removals = [one.when_settled().addCallbacks(lambda _, one=one: self._remove(one), lambda _: None) for one in held]
        removals += list(self._removing.values())
        return DeferredList(removals, consumeErrors=True).addCallback(lambda _: None)

    def clear_leftovers(self) -> Deferred[list[str]]:
        """
        Delete this gateway's namespaces that no pool holds (what a crashed
        run left); fires with their names.  A ``pasta`` left with one quits
        when it is deleted.  Nothing to do without iproute2.
        """
        try:
            ip = self._tool("ip")
        except NetworkError:
            return succeed([])
        mine = f"{NETNS_PREFIX}{self.tag}-"

        def delete(listing: bytes) -> Deferred[list[str]]:
            names = [
                entry["name"]
                for entry in json.loads(listing.strip() or b"[]")
                if entry.get("name", "").startswith(mine) and entry["name"] not in self._held
            ]
            deletions = [run(self._reactor, [ip, "netns", "delete", n]) for n in names]
            return DeferredList(deletions, consumeErrors=True).addCallback(
                lambda results: [n for n, (ok, _) in zip(names, results) if ok]
            )

        def failed(failure: Failure) -> list[str]:
            self.log.error("Could not clear leftover network namespaces: {e}", e=failure.value)
            return []

        d = maybeDeferred(run, self._reactor, [ip, "-j", "netns", "list"])
        return d.addCallback(delete).addErrback(failed)

    # preparing and removing

    def _prepare(self, held: _Held, policy: Policy) -> Deferred[None]:
        """
        The host's addresses and the allow-list's names looked up, then
        ``ip netns add``, its loopback up, the nftables table loaded, and only
        then ``pasta`` connected; a failure removes what was made.
        """
        try:
            ip, nft, pasta = self._tool("ip"), self._tool("nft"), self._tool("pasta")
            self._tool("nsenter")
        except NetworkError as e:
            return fail(e)
        if os.geteuid() != 0:
            return fail(
                NetworkError(
                    f"settings.network {json.dumps(policy)} needs the gateway to run as root (it makes"
                    f' a network namespace); this one runs as uid {os.geteuid()}: use "none"'
                )
            )
        name = held.name
        found: dict[str, Any] = {}

        d = run(self._reactor, [ip, "-j", "address", "show"])
        d.addCallback(lambda out: found.update(host=host_addresses(out)))
        d.addCallback(lambda _: resolve(self.resolver, policy))
        d.addCallback(lambda destinations: found.update(destinations=destinations))
        d.addCallback(lambda _: run(self._reactor, [ip, "netns", "add", name]))

        def made(_: Any) -> Deferred[Any]:
            rules = ruleset(policy, found["destinations"], found["host"]).encode()
            d = run(self._reactor, [ip, "-n", name, "link", "set", "lo", "up"])
            d.addCallback(lambda _: run(self._reactor, [ip, "netns", "exec", name, nft, "-f", "-"], rules))
            d.addCallback(lambda _: self._connect(held, pasta))
            d.addErrback(lambda failure: self._remove(held).addBoth(lambda _: failure))
            return d

        return d.addCallback(made).addCallback(lambda _: None)

    def _connect(self, held: _Held, pasta: str) -> Deferred[None]:
        """Start ``pasta`` on the namespace; fires once it has configured it."""
        argv = [
            pasta, "--quiet", "--foreground", "--runas", "0", "--config-net",
            "--netns", held.name, "--no-map-gw",
            "--tcp-ports", "none", "--udp-ports", "none", "--tcp-ns", "none", "--udp-ns", "none",
            "--pid", "/dev/fd/3",
        ]  # fmt: skip
        proto = _Pasta(argv, held.name)
        transport = self._reactor.spawnProcess(
            proto, pasta, argv, env={"PATH": TOOL_PATH}, path="/", childFDs={0: "w", 1: "r", 2: "r", 3: "r"}
        )
        held.pasta = proto

        def late() -> None:
            if not proto.ready.called:
                proto.ready.errback(NetworkError(f"{_command(argv)} was not ready after {READY_TIMEOUT:g} s"))
                try:
                    transport.signalProcess("KILL")
                except Exception:  # gone meanwhile
                    pass

        call = self._reactor.callLater(READY_TIMEOUT, late)

        def done(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        return proto.ready.addBoth(done)

    def _remove(self, held: _Held) -> Deferred[None]:
        """Delete the namespace, then wait for its ``pasta`` to end (it quits on the deletion)."""
        if held.pasta is not None:
            held.pasta.removing = True
        d = run(self._reactor, [self._tool("ip"), "netns", "delete", held.name]).addCallback(lambda _: None)

        def failed(failure: Failure) -> None:
            self.log.error("Could not remove network namespace {name}: {e}", name=held.name, e=failure.value)

        d.addErrback(failed)
        pasta = held.pasta
        if pasta is None:
            return d

        def stop(_: Any) -> Deferred[None]:
            if not pasta.ended.called:
                try:
                    pasta.transport.signalProcess("TERM")
                except Exception:  # gone meanwhile: processEnded is on its way
                    pass
            return _after(pasta.ended)

        return d.addCallback(stop)


class PoolInNamespace:
    """
    A worker pool whose endpoint namespace is held from its start to its
    stop: ``NetworkNamespaces.acquire`` before the first worker spawns,
    ``NetworkNamespaces.release`` once the last one ended.  Everything else
    is the pool's own (``submit`` bound directly, so requests take no detour).
    """

    def __init__(self, pool: Any, namespaces: NetworkNamespaces, endpoint_id: str, policy: Policy):
        self._pool = pool
        self._namespaces = namespaces
        self._endpoint_id = endpoint_id
        self._policy = policy
        self._holding = False
        submit = getattr(pool, "submit", None)
        if submit is not None:
            self.submit = submit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def start(self) -> Deferred[Any]:
        """Prepare (or share) the namespace, then start the pool; a failed preparation starts nothing."""
        self._holding = True

        def failed(failure: Failure) -> Failure:
            self._holding = False  # acquire() let go of its hold
            return failure

        d = self._namespaces.acquire(self._endpoint_id, self._policy)
        started: Deferred[None] = d.addCallbacks(lambda _: self._pool.start(), failed)
        return started

    def stop(self) -> Deferred[None]:
        """Stop the pool, then let go of the namespace (the last holder removes it)."""
        d: Deferred[None] = self._pool.stop()
        if not self._holding:
            return d
        self._holding = False

        def release(result: Any) -> Any:
            return self._namespaces.release(self._endpoint_id, self._policy).addBoth(lambda _: result)

        return d.addBoth(release)
