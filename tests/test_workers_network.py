"""
Per-endpoint network policy (edgegw_tx/workers/network.py, docs/isolation.md
"Network policy").

The policy's rules and the nftables table are checked as data; the
namespaces are checked for real (as root, with iproute2, nftables and
pasta): a process run through the same prefix argv as a worker tries to
reach the host's PostgreSQL on 127.0.0.1:5432, a listener on the host's
loopback, the host's own addresses and private ranges, and a server in an
"internet" namespace the test makes (198.51.100.10, TEST-NET-2, plus a
private and a shared address on the same namespace, so that a hole would
only ever send traffic to it). Every namespace, veth and pasta a test makes
is removed by its cleanups, even when it fails.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import sys
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, gatherResults, inlineCallbacks, succeed
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from edgegw_tx.workers import network
from tests.support.fakes import StubResolver
from tests.support.handlers import PROBE as HANDLER_PROBE
from tests.support.handlers import PROBE_DEPENDENCIES
from tests.support.isolation import IsolationTestCase
from edgegw_tx.workers.network import (
    BLOCKED_RANGES,
    MAX_ALLOWED,
    Destination,
    NetworkError,
    NetworkNamespaces,
    PolicyError,
    PoolInNamespace,
    check_policy,
    host_addresses,
    ruleset,
)

INTERNET = "198.51.100.10"  # TEST-NET-2: a "public" address of the test's own namespace
PRIVATE = "10.199.0.10"  # a private and a shared address on the same namespace
SHARED = "100.64.99.10"
SERVER_PORTS = (8080, 8081, 8082)
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# Serves "hello <port>" on every connection to the ports given, on all addresses.
SERVER = r"""
import socket, sys, threading
def serve(s):
    while True:
        c, _ = s.accept()
        c.sendall(b"hello %d" % s.getsockname()[1])
        c.close()
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

# Tries each host:port; prints {target: "ok <what it read>" | "error <why>"}.
PROBE = r"""
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    host = host.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(5)
    try:
        s.connect((host, int(port)))
        out[target] = "ok " + s.recv(64).decode()
    except OSError as e:
        out[target] = "error " + (type(e).__name__ if e.errno is None else str(e))
    finally:
        s.close()
print(json.dumps(out))
"""


class PolicyTests(unittest.TestCase):
    """C{check_policy}: the rule the management API applies to settings.network."""

    def test_names(self) -> None:
        """"none" and "outbound" are policies as they are."""
        self.assertEqual(check_policy("none"), "none")
        self.assertEqual(check_policy("outbound"), "outbound")

    def test_allow_list_normalised(self) -> None:
        """Names are lower-cased, IPv6 compressed, a duplicate kept once."""
        self.assertEqual(
            check_policy(["DB.Example.com:5432", "[2001:DB8:0::1]:443", "203.0.113.7:80", "db.example.com:5432"]),
            ["db.example.com:5432", "[2001:db8::1]:443", "203.0.113.7:80"],
        )

    def test_refused(self) -> None:
        """Anything else is refused with a message saying what is wrong and where."""
        cases = [
            ("all", None, '"none", "outbound"'),
            (None, None, '"none", "outbound"'),
            ({"a": 1}, None, '"none", "outbound"'),
            ([], None, "at least one"),
            (["x.example:1"] * (MAX_ALLOWED + 1), None, f"at most {MAX_ALLOWED}"),
            (["ok.example:1", "nohost"], 1, "port"),
            (["ok.example:0"], 0, "from 1 to 65535"),
            (["ok.example:65536"], 0, "from 1 to 65535"),
            (["ok.example:-1"], 0, "from 1 to 65535"),
            (["bad_name:80"], 0, "not host:port"),
            (["256.1.1.1:80"], 0, "not host:port"),
            ([":80"], 0, "not host:port"),
            (["[::zz]:80"], 0, "not host:port"),
            (["[1:2:3]:80"], 0, "not an IPv6 address"),
            (["a" * 300 + ".example:80"], 0, "longer than"),
            ([80], 0, "string"),
            (["ok.example:80\n"], 0, "port"),
        ]
        for value, where, words in cases:
            with self.assertRaises(PolicyError, msg=repr(value)) as caught:
                check_policy(value)
            self.assertIn(words, caught.exception.problem, repr(value))
            self.assertEqual(caught.exception.where, where, repr(value))

    def test_pattern_is_the_gate(self) -> None:
        """An entry the OpenAPI pattern refuses is refused by the check too (one rule, not two)."""
        import re

        pattern = re.compile(network.ALLOW_ENTRY_PATTERN)
        for entry in ["a.b:1", "1.2.3.4:65535", "[::1]:1", "x-y.z9:443", "a:1", "1.2.3.4:0", "9.9.9.9.9:1", "a..b:1", "-a:1"]:
            try:
                check_policy([entry])
                accepted = True
            except PolicyError:
                accepted = False
            if accepted:
                self.assertTrue(pattern.fullmatch(entry), entry)
            if not pattern.fullmatch(entry):
                self.assertFalse(accepted, entry)


class RulesetTests(unittest.TestCase):
    """The nftables table loaded inside an endpoint's namespace, as text."""

    def test_outbound(self) -> None:
        """Outbound: own loopback, then the private ranges and the host's addresses rejected, the rest accepted."""
        rules = ruleset("outbound", [], ["127.0.0.1", "192.0.2.2", "fd00::2", "10.1.2.3"])
        self.assertIn('oifname "lo" accept', rules)
        self.assertIn("192.0.2.2", rules)
        self.assertIn("fc00::/7", rules)  # fd00::2 is inside it: collapsed, no conflicting interval
        self.assertNotIn("fd00::2", rules)
        import re

        rejected = [ipaddress.ip_network(n) for n in re.findall(r"[0-9a-f.:]+/[0-9]+", rules)]
        for blocked in BLOCKED_RANGES + ("192.0.2.2/32",):
            net = ipaddress.ip_network(blocked)
            self.assertTrue(any(net.version == r.version and net.subnet_of(r) for r in rejected), blocked)
        self.assertIn("policy accept", rules)
        self.assertNotIn("\n    reject", rules)

    def test_allow_list(self) -> None:
        """An allow-list: only its address/port pairs, everything else rejected at the end."""
        rules = ruleset(
            ["a:1"],
            [Destination(ipaddress.ip_address("203.0.113.7"), 443), Destination(ipaddress.ip_address("2001:db8::1"), 80)],
            ["192.0.2.2"],
        )
        self.assertIn("ip daddr . th dport { 203.0.113.7 . 443 } accept", rules)
        self.assertIn("ip6 daddr . th dport { 2001:db8::1 . 80 } accept", rules)
        self.assertTrue(rules.rstrip().endswith("reject with icmpx admin-prohibited\n  }\n}"))

    def test_host_addresses(self) -> None:
        """The host's addresses are every local address in ``ip -j address show``."""
        listing = json.dumps(
            [
                {"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}, {"local": "::1"}]},
                {"ifname": "eth0", "addr_info": [{"local": "192.0.2.2"}, {"local": "fe80::1"}]},
                {"ifname": "ifb0"},
            ]
        ).encode()
        self.assertEqual(host_addresses(listing), ["127.0.0.1", "::1", "192.0.2.2", "fe80::1"])


class CommandTests(unittest.TestCase):
    """Commands run as children of the reactor; a failure names the command and what it said."""

    def test_failure_named(self) -> Deferred[None]:
        """A failing command's NetworkError has its argv, exit status and stderr."""
        d = network.run(reactor, ["/bin/sh", "-c", "echo some trouble >&2; exit 3"])
        d = self.assertFailure(d, NetworkError)
        d.addCallback(lambda e: [self.assertIn(w, str(e)) for w in ("/bin/sh -c", "exit 3", "some trouble")])
        return d

    def test_stdin_and_stdout(self) -> Deferred[None]:
        """What is given is written on stdin; stdout is the result."""
        d = network.run(reactor, ["/bin/cat"], b"rules")
        d.addCallback(self.assertEqual, b"rules")
        return d

    def test_missing_tool(self) -> None:
        """Without pasta (or any tool) the error names the tool and its Debian package."""
        spaces = NetworkNamespaces("t00000", reactor, tool_path="/nonexistent")
        d = self.assertFailure(spaces.acquire("e1", "outbound"), NetworkError)
        d.addCallback(lambda e: self.assertIn("(Debian package iproute2)", str(e)))
        d.addCallback(lambda _: self.assertEqual(spaces.names(), []))
        return d

    def test_needs_root(self) -> Deferred[None]:
        """A gateway that is not root gets a clear error naming the policy, and nothing is made."""
        if any(shutil.which(t, path=network.TOOL_PATH) is None for t in network.TOOLS):
            raise unittest.SkipTest("the tools are not installed (tools/setup-sandbox)")
        self.patch(network.os, "geteuid", lambda: 1000)
        spaces = NetworkNamespaces("t00000", reactor)
        d = self.assertFailure(spaces.acquire("e1", "outbound"), NetworkError)
        d.addCallback(lambda e: [self.assertIn(w, str(e)) for w in ('"outbound"', "root", "uid 1000")])
        d.addCallback(lambda _: self.assertEqual(spaces.names(), []))
        return d

    def test_none_needs_nothing(self) -> Deferred[None]:
        """Policy "none" has no prefix and prepares nothing (the launcher unshares the network)."""
        spaces = NetworkNamespaces("t00000", reactor, tool_path="/nonexistent")
        self.assertEqual(spaces.prefix("e1", "none"), [])
        d = spaces.acquire("e1", "none")
        d.addCallback(self.assertEqual, [])
        return d


class ResolveTests(unittest.TestCase):
    """Allow-list names are resolved by the gateway; addresses are taken as they are."""

    def test_names_and_addresses(self) -> None:
        """Every address of a name is allowed with its port; literal addresses are not looked up."""
        resolver = StubResolver({"a.test": ["203.0.113.1", "203.0.113.2"]})
        found = self.successResultOf(network.resolve(resolver, ["a.test:1", "[2001:db8::1]:2", "198.51.100.9:3"]))
        self.assertEqual(
            [(str(d.address), d.port) for d in found],
            [("203.0.113.1", 1), ("203.0.113.2", 1), ("2001:db8::1", 2), ("198.51.100.9", 3)],
        )
        self.assertEqual(resolver.asked, ["a.test"])

    def test_unresolvable(self) -> None:
        """A name with no address fails with a NetworkError naming it and its entry."""
        failure = self.failureResultOf(network.resolve(StubResolver({}), ["198.51.100.9:3", "b.test:4"]), NetworkError)
        self.assertIn("'b.test' of 'b.test:4' does not resolve", str(failure.value))

    def test_outbound_resolves_nothing(self) -> None:
        """"outbound" has no destinations to look up."""
        self.assertEqual(self.successResultOf(network.resolve(StubResolver({}), "outbound")), [])


class _Counting(Protocol):
    def connectionMade(self) -> None:
        self.factory.count += 1
        self.transport.loseConnection()


class _Server(ProcessProtocol):
    """The test internet's server: ready when it prints so, ended when reaped."""

    def __init__(self) -> None:
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        if b"ready" in data and not self.ready.called:
            self.ready.callback(None)

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(reason)
        self.ended.callback(None)


def _needs_root() -> None:
    if os.geteuid() != 0:
        raise unittest.SkipTest("network namespaces need root")
    for tool in ("ip", "nft", "pasta", "nsenter", "setpriv"):
        if shutil.which(tool, path=network.TOOL_PATH) is None:
            raise unittest.SkipTest(f"{tool} is not installed (tools/setup-sandbox installs it)")


# The host routes to INTERNET, PRIVATE and SHARED exist once per host: one
# test internet at a time, whichever trial process (``trial -j``) makes it.
INTERNET_LOCK = os.path.join(tempfile.gettempdir(), "edgegw-test-internet.lock")


class TestInternet:
    """
    The test's "internet": a namespace with a server on ports 8080-8082 at
    INTERNET, PRIVATE and SHARED, joined to the host by a veth with host
    routes to those three addresses only; everything removed by cleanups.
    Made under an exclusive lock on L{INTERNET_LOCK}, held until removed.
    """

    def __init__(self, test_case: unittest.TestCase, tag: str):
        self.test_case = test_case
        self.ip = shutil.which("ip", path=network.TOOL_PATH)
        self.name = f"egtest-inet-{tag}"
        self.veth = f"egt{tag}"
        self.server: _Server | None = None
        self._lock: Any = None

    @inlineCallbacks
    def make(self) -> Any:
        """Make it; its removal is a cleanup of the test, registered first."""
        self.test_case.addCleanup(self.remove)
        self._lock = open(INTERNET_LOCK, "a")
        # flock(2) waits in a thread, not in the reactor.
        yield deferToThread(fcntl.flock, self._lock.fileno(), fcntl.LOCK_EX)
        ip = self.ip
        yield network.run(reactor, [ip, "netns", "add", self.name])
        yield network.run(reactor, [ip, "link", "add", self.veth, "type", "veth", "peer", "name", "inet0", "netns", self.name])
        yield network.run(reactor, [ip, "address", "add", "198.51.100.1/30", "dev", self.veth])
        yield network.run(reactor, [ip, "link", "set", self.veth, "up"])
        for address in (INTERNET, PRIVATE, SHARED):
            yield network.run(reactor, [ip, "-n", self.name, "address", "add", f"{address}/32", "dev", "inet0"])
            yield network.run(reactor, [ip, "route", "add", f"{address}/32", "dev", self.veth])
        yield network.run(reactor, [ip, "-n", self.name, "link", "set", "inet0", "up"])
        yield network.run(reactor, [ip, "-n", self.name, "link", "set", "lo", "up"])
        yield network.run(reactor, [ip, "-n", self.name, "route", "add", "default", "dev", "inet0"])
        self.server = _Server()
        argv = [shutil.which("nsenter", path=network.TOOL_PATH), f"--net=/run/netns/{self.name}", "--", PYTHON, "-c", SERVER]
        argv += [str(p) for p in SERVER_PORTS]
        reactor.spawnProcess(self.server, argv[0], argv, env={}, path="/")
        yield self.server.ready

    @inlineCallbacks
    def remove(self) -> Any:
        """The server killed and reaped, the veth (its routes with it) and the namespace deleted."""
        if self.server is not None and not self.server.ended.called:
            self.server.transport.signalProcess("KILL")
            yield self.server.ended
        for argv in ([self.ip, "link", "delete", self.veth], [self.ip, "netns", "delete", self.name]):
            try:
                yield network.run(reactor, argv)
            except NetworkError:
                pass
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


@inlineCallbacks
def namespaces_left(tag: str) -> Any:
    """Delete the namespaces whose name holds C{tag}; fires with their names (should be none)."""
    ip = shutil.which("ip", path=network.TOOL_PATH)
    listing = yield network.run(reactor, [ip, "-j", "netns", "list"])
    left = [e["name"] for e in json.loads(listing.strip() or b"[]") if tag in e["name"]]
    for name in left:
        yield network.run(reactor, [ip, "netns", "delete", name])
    return left


class GatedNamespaces(NetworkNamespaces):
    """Counts preparations; a removal waits for C{gate} when one is set."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.prepared: list[str] = []
        self.gate: Deferred[None] | None = None

    def _prepare(self, held: Any, policy: Any) -> Deferred[None]:
        self.prepared.append(held.name)
        return super()._prepare(held, policy)

    def _remove(self, held: Any) -> Deferred[None]:
        gate, self.gate = self.gate, None
        if gate is None:
            return super()._remove(held)
        return gate.addCallback(lambda _: super(GatedNamespaces, self)._remove(held))


class NamespaceTests(unittest.TestCase):
    """Real namespaces: what a process in an endpoint's namespace can and cannot reach."""

    def setUp(self) -> Deferred[None]:
        _needs_root()
        self.ip = shutil.which("ip", path=network.TOOL_PATH)
        suffix = secrets.token_hex(3)
        self.tag = "t" + suffix[:5]
        self.resolver = StubResolver({"inet.test": [INTERNET]})
        self.spaces = NetworkNamespaces(self.tag, reactor, resolver=self.resolver)
        self.internet = TestInternet(self, suffix)
        d = self.internet.make()
        # Whatever happens, nothing of this test stays (cleanups run last-in first).
        self.addCleanup(self._no_namespace_left)
        return d

    @inlineCallbacks
    def _no_namespace_left(self) -> Any:
        yield self.spaces.close()
        left = yield namespaces_left(self.tag)
        self.assertEqual(left, [], "a namespace was left behind")

    def probe(self, prefix: list[str], *targets: str, user: bool = True) -> Deferred[dict[str, str]]:
        """Run the probe through ``prefix`` (as an unprivileged user, as a worker is) and read its results."""
        argv = list(prefix)
        if user:
            argv += [shutil.which("setpriv", path=network.TOOL_PATH), "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--"]
        argv += [PYTHON, "-c", PROBE, *targets]
        return network.run(reactor, argv, timeout=60).addCallback(json.loads)

    def listen_on_host(self, interface: str) -> Any:
        """A listener of the host's own, counting the connections it gets."""
        factory = Factory.forProtocol(_Counting)
        factory.count = 0
        port = reactor.listenTCP(0, factory, interface=interface)
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    def host_address(self) -> Deferred[str]:
        """A non-loopback address of the host (its main interface's)."""
        d = network.run(reactor, [self.ip, "-j", "address", "show"])

        def pick(out: bytes) -> str:
            for address in host_addresses(out):
                parsed = ipaddress.ip_address(address)
                if parsed.version == 4 and not parsed.is_loopback and address != "198.51.100.1":
                    return address
            raise unittest.SkipTest("the host has no IPv4 address but loopback")

        return d.addCallback(pick)

    @inlineCallbacks
    def test_outbound(self) -> Any:
        """
        "outbound" reaches the internet but not the host's loopback (PostgreSQL
        at 127.0.0.1:5432, a listener on 127.0.0.1), not the host's own
        addresses, not private or shared ranges.
        """
        loopback, loopback_port = self.listen_on_host("127.0.0.1")
        everywhere, everywhere_port = self.listen_on_host("0.0.0.0")
        mine = yield self.host_address()
        prefix = yield self.spaces.acquire("endpoint-1", "outbound")
        self.assertEqual(prefix[-1], "--")
        results = yield self.probe(
            prefix,
            f"{INTERNET}:8080",
            "127.0.0.1:5432",
            f"127.0.0.1:{loopback_port}",
            f"{mine}:{everywhere_port}",
            f"198.51.100.1:{everywhere_port}",
            f"{PRIVATE}:8080",
            f"{SHARED}:8080",
        )
        self.assertEqual(results.pop(f"{INTERNET}:8080"), "ok hello 8080")
        for target, result in results.items():
            self.assertTrue(result.startswith("error"), f"{target}: {result}")
        self.assertEqual((loopback.count, everywhere.count), (0, 0))

    @inlineCallbacks
    def test_allow_list(self) -> Any:
        """An allow-list reaches only its host:port pairs (a name resolved by the gateway), nothing else."""
        policy = check_policy([f"{INTERNET}:8080", "inet.test:8081"])
        prefix = yield self.spaces.acquire("endpoint-2", policy)
        self.assertEqual(self.resolver.asked, ["inet.test"])
        results = yield self.probe(
            prefix, f"{INTERNET}:8080", f"{INTERNET}:8081", f"{INTERNET}:8082", f"{PRIVATE}:8080", "127.0.0.1:5432"
        )
        self.assertEqual(results.pop(f"{INTERNET}:8080"), "ok hello 8080")
        self.assertEqual(results.pop(f"{INTERNET}:8081"), "ok hello 8081")
        for target, result in results.items():
            self.assertTrue(result.startswith("error"), f"{target}: {result}")

    @inlineCallbacks
    def test_rules_cannot_be_changed_from_inside(self) -> Any:
        """A worker's user cannot flush the namespace's rules or change its routes; they still hold after trying."""
        prefix = yield self.spaces.acquire("endpoint-3", "outbound")
        nft = shutil.which("nft", path=network.TOOL_PATH)
        setpriv = [shutil.which("setpriv", path=network.TOOL_PATH), "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--"]
        for argv in ([nft, "flush", "ruleset"], [self.ip, "route", "add", "10.199.0.0/16", "dev", "lo"]):
            yield self.assertFailure(network.run(reactor, prefix + setpriv + argv), NetworkError)
        results = yield self.probe(prefix, f"{PRIVATE}:8080")
        self.assertTrue(results[f"{PRIVATE}:8080"].startswith("error"))

    @inlineCallbacks
    def test_shared_and_released(self) -> Any:
        """Holders share one namespace; the last release removes it and reaps its pasta."""
        first = yield self.spaces.acquire("endpoint-4", "outbound")
        second = yield self.spaces.acquire("endpoint-4", "outbound")
        self.assertEqual(first, second)
        name = self.spaces.name("endpoint-4", "outbound")
        pasta = self.spaces._held[name].pasta
        yield self.spaces.release("endpoint-4", "outbound")
        self.assertEqual(self.spaces.names(), [name])
        yield self.spaces.release("endpoint-4", "outbound")
        self.assertEqual(self.spaces.names(), [])
        self.assertTrue(pasta.ended.called)
        self.assertFalse(os.path.exists(f"/run/netns/{name}"))

    @inlineCallbacks
    def test_concurrent_holders(self) -> Any:
        """Two acquires during one preparation share it (one pasta); an acquire during a removal waits for it."""
        spaces = self.spaces = GatedNamespaces(self.tag, reactor, resolver=self.resolver)
        first, second = yield gatherResults([spaces.acquire("endpoint-7", "outbound"), spaces.acquire("endpoint-7", "outbound")])
        self.assertEqual(first, second)
        self.assertEqual(len(spaces.prepared), 1)
        pasta = spaces._held[spaces.name("endpoint-7", "outbound")].pasta
        yield spaces.release("endpoint-7", "outbound")
        gate = spaces.gate = Deferred()
        self.addCleanup(lambda: None if gate.called else gate.callback(None))  # even when an assertion fails
        removed = spaces.release("endpoint-7", "outbound")
        again = spaces.acquire("endpoint-7", "outbound")
        self.assertEqual(len(spaces.prepared), 1, "prepared again while the old namespace was being removed")
        gate.callback(None)
        yield removed
        again = yield again
        self.assertTrue(pasta.ended.called)
        self.assertEqual((again, len(spaces.prepared)), (first, 2))
        results = yield self.probe(again, f"{INTERNET}:8080")
        self.assertEqual(results[f"{INTERNET}:8080"], "ok hello 8080")

    @inlineCallbacks
    def test_policy_change_gets_another_namespace(self) -> Any:
        """A changed policy is another namespace, so old workers keep theirs while they drain."""
        old = yield self.spaces.acquire("endpoint-5", "outbound")
        new = yield self.spaces.acquire("endpoint-5", [f"{INTERNET}:8080"])
        self.assertNotEqual(old, new)
        yield self.spaces.release("endpoint-5", "outbound")
        results = yield self.probe(new, f"{INTERNET}:8080", f"{INTERNET}:8082")
        self.assertEqual(results[f"{INTERNET}:8080"], "ok hello 8080")
        self.assertTrue(results[f"{INTERNET}:8082"].startswith("error"))

    @inlineCallbacks
    def test_unresolvable_name(self) -> Any:
        """A name that does not resolve fails the preparation naming it, and leaves no namespace."""
        failure = yield self.assertFailure(self.spaces.acquire("endpoint-6", ["nowhere.test:80"]), NetworkError)
        self.assertIn("nowhere.test", str(failure))
        self.assertEqual(self.spaces.names(), [])
        self.assertFalse(os.path.exists(f"/run/netns/{self.spaces.name('endpoint-6', ['nowhere.test:80'])}"))

    @inlineCallbacks
    def test_clear_leftovers(self) -> Any:
        """At start a gateway deletes its own leftover namespaces, not another gateway's."""
        mine = f"{network.NETNS_PREFIX}{self.tag}-crashed-1"
        other_tag = "u" + self.tag[1:]
        theirs = f"{network.NETNS_PREFIX}{other_tag}-running-1"
        for name in (mine, theirs):
            yield network.run(reactor, [self.ip, "netns", "add", name])
        self.addCleanup(lambda: network.run(reactor, [self.ip, "netns", "delete", theirs]))
        cleared = yield self.spaces.clear_leftovers()
        self.assertEqual(cleared, [mine])
        self.assertFalse(os.path.exists(f"/run/netns/{mine}"))
        self.assertTrue(os.path.exists(f"/run/netns/{theirs}"))


class SettingsTests(unittest.TestCase):
    """settings.network in the management API: validation, default, OpenAPI, pool replacement."""

    def fields(self, network_value: Any) -> Any:
        from edgegw_tx.admin.validation import endpoint_fields

        payload = {"name": "n", "path": "/p", "method": "GET", "settings": {"network": network_value}}
        return endpoint_fields(payload)["settings"]["network"]

    def test_bad_values_are_400_naming_the_field(self) -> None:
        """An unknown word, a malformed or out-of-range entry, too many entries: 400 naming the field (and entry)."""
        from edgegw_tx.admin.errors import BadRequest

        cases = [
            ("everything", "settings.network"),
            (["ok.example:443", "ok.example:70000"], "settings.network[1]"),
            (["no-port.example"], "settings.network[0]"),
            ([f"203.0.113.{i}:80" for i in range(MAX_ALLOWED + 1)], "settings.network"),
        ]
        for value, field in cases:
            with self.assertRaises(BadRequest) as caught:
                self.fields(value)
            self.assertEqual(caught.exception.status, 400)
            self.assertEqual(caught.exception.extra["field"], field)
            self.assertIn(f"'{field}'", caught.exception.message)

    def test_top_level_shorthand(self) -> None:
        """Like every setting, network is accepted at the top level of the body too."""
        from edgegw_tx.admin.validation import endpoint_fields

        fields = endpoint_fields({"name": "n", "path": "/p", "method": "GET", "network": "outbound"})
        self.assertEqual(fields["settings"]["network"], "outbound")

    def test_default_none_for_new_and_existing(self) -> None:
        """A new endpoint gets "none", and so does a record stored before the setting existed."""
        from edgegw_tx.admin.validation import effective_settings, endpoint_fields

        fields = endpoint_fields({"name": "n", "path": "/p", "method": "GET"})
        self.assertEqual(fields["settings"]["network"], "none")
        self.assertEqual(effective_settings({"instances": 1, "timeout": 30.0, "env": {}})["network"], "none")

    def test_change_replaces_the_workers(self) -> None:
        """Changing the policy of a running endpoint replaces its pool (its workers must move namespace)."""
        from edgegw_tx.admin.validation import pool_settings_changed

        self.assertTrue(pool_settings_changed({"network": "none"}, {"network": "outbound"}))
        self.assertTrue(pool_settings_changed({"network": ["a.example:1"]}, {"network": ["a.example:2"]}))
        self.assertFalse(pool_settings_changed({}, {"network": "none"}))

    def test_openapi_derived(self) -> None:
        """The OpenAPI document's settings.network is built from the module's values, not a copy."""
        from edgegw_tx.admin.schema import settings_properties

        schema = settings_properties()["network"]
        words, allow = schema["oneOf"]
        self.assertEqual(words["enum"], list(network.POLICIES))
        self.assertEqual(allow["maxItems"], MAX_ALLOWED)
        self.assertEqual(allow["items"]["pattern"], network.ALLOW_ENTRY_PATTERN)
        self.assertEqual(allow["items"]["maxLength"], network.MAX_ENTRY)


class _WithInternet:
    """A real gateway (L{IsolationTestCase}) and the test internet; no namespace of the gateway survives."""

    @inlineCallbacks
    def setUp(self) -> Any:
        _needs_root()
        # Registered first, so it runs last: after the gateway stopped, none of its namespaces is left.
        self.addCleanup(self._no_namespace_left)
        yield super().setUp()
        self.internet = TestInternet(self, secrets.token_hex(3))
        yield self.internet.make()

    @inlineCallbacks
    def _no_namespace_left(self) -> Any:
        gateway = getattr(self, "gateway", None)
        if gateway is None:
            return
        left = yield namespaces_left(network.gateway_tag(gateway.data_dir))
        self.assertEqual(left, [], "the gateway left a namespace behind")

    @inlineCallbacks
    def connect(self, name: str, addr: str) -> Any:
        """The probe handler's C{connect}: its JSON answer."""
        code, body = yield self.get_json(f"/{name}/connect?addr={addr}")
        self.assertEqual(code, 200, body)
        return body


class EndpointIntegrationTests(_WithInternet, IsolationTestCase):
    """
    A real gateway and a real compiled handler (the isolation tests' probe):
    the policy reaches the workers through the launcher's prefix, and the
    namespace lives exactly as long as the endpoint's workers.
    """

    @inlineCallbacks
    def test_outbound_endpoint(self) -> Any:
        """
        A worker of an "outbound" endpoint reaches the internet, not the
        host's PostgreSQL or Redis on 127.0.0.1 nor a private address; the
        endpoint's delete removes its namespace.
        """
        started, _ = yield self.deploy_probe("out", network="outbound")
        self.assertEqual(started["settings"]["network"], "outbound")
        body = yield self.connect("out", f"{INTERNET}:8080")
        self.assertEqual(body, {"connected": True})
        for addr in ("127.0.0.1:5432", "127.0.0.1:6379", f"{PRIVATE}:8080", f"{SHARED}:8080"):
            body = yield self.connect("out", addr)
            self.assertIn("error", body, addr)
        spaces = self.gateway.runtime.network
        [name] = spaces.names()
        self.assertTrue(os.path.exists(f"/run/netns/{name}"))
        code, document = yield self.gateway.call("DELETE", "/endpoints/" + started["id"])
        self.assertEqual(code, 200, document)
        self.assertEqual(spaces.names(), [])
        self.assertFalse(os.path.exists(f"/run/netns/{name}"))

    @inlineCallbacks
    def test_allow_list_then_outbound(self) -> Any:
        """
        An allow-list endpoint reaches only its host:port; changing it to
        "outbound" replaces the workers, which then reach the rest, and the
        old namespace goes once the old workers are drained.
        """
        started, _ = yield self.deploy_probe("allow", network=[f"{INTERNET}:8080"])
        body = yield self.connect("allow", f"{INTERNET}:8080")
        self.assertEqual(body, {"connected": True})
        for addr in (f"{INTERNET}:8082", "127.0.0.1:5432"):
            body = yield self.connect("allow", addr)
            self.assertIn("error", body, addr)
        spaces = self.gateway.runtime.network
        [old] = spaces.names()
        code, document = yield self.gateway.call("PUT", "/endpoints/" + started["id"], {"settings": {"network": "outbound"}})
        self.assertEqual(code, 200, document)
        body = yield self.connect("allow", f"{INTERNET}:8082")
        self.assertEqual(body, {"connected": True})
        [new] = spaces.names()
        self.assertNotEqual(new, old)
        self.assertFalse(os.path.exists(f"/run/netns/{old}"))


    @inlineCallbacks
    def test_service_calls_work_whatever_the_policy(self) -> Any:
        """The notes example on a SQLite service works with "outbound": service calls go over the pipes."""
        from tests.support.handlers import example

        code, db = yield self.gateway.call("POST", "/services", {"name": "notes-db", "service_type": "sqlite", "config": {}})
        self.assertEqual(code, 201, db)
        for method in ("POST", "GET"):
            started = yield self.gateway.deploy(
                f"notes-{method.lower()}", "/notes", example("notes_sqlite"), method=method, network="outbound"
            )
            code, bound = yield self.gateway.call(
                "POST", f"/endpoints/{started['id']}/services", {"service_id": db["data"]["id"], "pool_id": "notes"}
            )
            self.assertIn(code, (200, 201), bound)
        response, note = yield self.json_request("POST", "/notes", json={"title": "through the gateway"})
        self.assertEqual(response.code, 201, note)
        response, listing = yield self.json_request("GET", "/notes")
        self.assertEqual([n["title"] for n in listing["notes"]], ["through the gateway"])


    @inlineCallbacks
    def test_leftovers_cleared_at_start(self) -> Any:
        """A namespace of this gateway's tag left by a crashed run is deleted when the gateway starts."""
        ip = shutil.which("ip", path=network.TOOL_PATH)
        leftover = f"{network.NETNS_PREFIX}{network.gateway_tag(self.gateway.data_dir)}-crashed-1"
        yield self.gateway.stop()
        yield network.run(reactor, [ip, "netns", "add", leftover])
        self.addCleanup(namespaces_left, leftover)
        yield self.gateway.start()
        self.assertFalse(os.path.exists(f"/run/netns/{leftover}"))


    @inlineCallbacks
    def test_unresolvable_name_fails_the_start(self) -> Any:
        """A name of the allow-list that does not resolve: the start answers 502 naming it, no namespace is left."""
        self.gateway.runtime.network.resolver = StubResolver({})  # no DNS traffic from tests
        code, created = yield self.gateway.call(
            "POST", "/endpoints",
            {"name": "lost", "path": "/lost/{what}", "method": "GET", "code": HANDLER_PROBE,
             "settings": {"network": ["nowhere.test:443"], "dependencies": PROBE_DEPENDENCIES}},
        )  # fmt: skip
        self.assertEqual(code, 201, created)
        endpoint_id = created["data"]["id"]
        code, compiled = yield self.gateway.call("POST", f"/endpoints/{endpoint_id}/compile")
        self.assertEqual(code, 200, compiled)
        code, started = yield self.gateway.call("POST", f"/endpoints/{endpoint_id}/start")
        self.assertEqual(code, 502, started)
        self.assertIn("'nowhere.test' of 'nowhere.test:443' does not resolve", started["error"])
        self.assertEqual(self.gateway.runtime.network.names(), [])



class ProcessesEndpointIntegrationTests(_WithInternet, IsolationTestCase):
    """With --processes 2 the data-plane processes spawn the workers, through the same prefix."""

    runtime_options = {"processes": 2}

    @inlineCallbacks
    def test_outbound_endpoint(self) -> Any:
        """Workers in both data-plane processes reach the internet, not the host's PostgreSQL; stop removes the namespace."""
        started = yield self.gateway.deploy(
            "out", "/out/{what}", HANDLER_PROBE, dependencies=PROBE_DEPENDENCIES, network="outbound",
            min_instances=1, max_instances=1,
        )  # fmt: skip
        self.assertEqual(len(started["pids"]), 2)
        for _ in range(4):  # the connections land on both processes' workers
            body = yield self.connect("out", f"{INTERNET}:8080")
            self.assertEqual(body, {"connected": True})
            body = yield self.connect("out", "127.0.0.1:5432")
            self.assertIn("error", body)
        [name] = self.gateway.runtime.network.names()
        code, document = yield self.gateway.call("POST", "/endpoints/%s/stop" % started["id"])
        self.assertEqual(code, 200, document)
        self.assertFalse(os.path.exists(f"/run/netns/{name}"))


class _FakePool:
    """Records the calls a PoolInNamespace passes on."""

    def __init__(self, calls: list[str]):
        self.calls = calls
        self.pids = [1]

    def submit(self, frame: Any, answer: Any) -> None:
        self.calls.append("submit")

    def start(self) -> Deferred[list[int]]:
        self.calls.append("start")
        return succeed([1])

    def stop(self) -> Deferred[None]:
        self.calls.append("stop")
        return succeed(None)


class _FakeNamespaces:
    """acquire/release recorded; acquire fails when told to."""

    def __init__(self, calls: list[str], error: Exception | None = None):
        self.calls = calls
        self.error = error

    def acquire(self, endpoint_id: str, policy: Any) -> Deferred[list[str]]:
        self.calls.append("acquire")
        return fail(self.error) if self.error else succeed(["nsenter", "--"])

    def release(self, endpoint_id: str, policy: Any) -> Deferred[None]:
        self.calls.append("release")
        return succeed(None)


class PoolInNamespaceTests(unittest.TestCase):
    """The seam between a pool and its endpoint's namespace."""

    def test_held_from_start_to_stop(self) -> None:
        """The namespace is acquired before the pool starts and released after it stopped."""
        calls: list[str] = []
        pool = PoolInNamespace(_FakePool(calls), _FakeNamespaces(calls), "e1", "outbound")
        self.assertEqual(self.successResultOf(pool.start()), [1])
        pool.submit({}, None)
        self.successResultOf(pool.stop())
        self.successResultOf(pool.stop())
        self.assertEqual(calls, ["acquire", "start", "submit", "stop", "release", "stop"])
        self.assertEqual(pool.pids, [1])

    def test_failed_preparation_starts_nothing(self) -> None:
        """A namespace that cannot be prepared fails the start; the pool never starts and stop releases nothing."""
        calls: list[str] = []
        pool = PoolInNamespace(_FakePool(calls), _FakeNamespaces(calls, NetworkError("ip netns add failed")), "e1", "outbound")
        self.failureResultOf(pool.start(), NetworkError)
        self.successResultOf(pool.stop())
        self.assertEqual(calls, ["acquire", "stop"])

    def test_submit_is_the_pools_own(self) -> None:
        """Requests go straight to the pool's submit: no attribute detour on the hot path."""
        inner = _FakePool([])
        pool = PoolInNamespace(inner, _FakeNamespaces([]), "e1", "outbound")
        self.assertIn("submit", vars(pool))
        self.assertEqual(pool.submit, inner.submit)


class DocsTests(unittest.TestCase):
    """The user docs say what the module enforces (they are written by hand: this catches drift)."""

    def read(self, name: str) -> str:
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", name)) as f:
            return f.read()

    def test_isolation_lists_every_blocked_range(self) -> None:
        """docs/isolation.md's "Network policy" names every blocked range and the policies."""
        text = self.read("isolation.md")
        section = text[text.index("## Network policy") :]
        section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
        for blocked in BLOCKED_RANGES:
            shown = blocked.removesuffix("/128")
            self.assertIn(f"`{shown}`", section, blocked)
        for policy in network.POLICIES:
            self.assertIn(f'`"{policy}"`', section)

    def test_api_row(self) -> None:
        """docs/api.md's settings.network row gives the default, the policies and the allow-list's size."""
        [row] = [line for line in self.read("api.md").splitlines() if line.startswith("| `settings.network`")]
        self.assertIn(f'1–{MAX_ALLOWED} `"host:port"`', row)
        self.assertIn(f'| `"{network.DEFAULT_POLICY}"` |', row)
        for policy in network.POLICIES:
            self.assertIn(f'`"{policy}"`', row)
