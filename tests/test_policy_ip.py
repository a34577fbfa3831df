"""
The ``ip`` policy part (``edgegw_tx.policy.ipfilter``), the client address
behind trusted proxies (``forwarded``) and the network sets both match with
(``networks``): the schema's and ``problems``' 400s, deny over allow, IPv4
and IPv6, IPv4-mapped peers, ``X-Forwarded-For`` read only from trusted
proxies and walked from the right.  No gateway: checks are called directly.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address, ip_network
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from edgegw_tx.admin import schemadocs
from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.admin.validation import check_schema
from edgegw_tx.policy import ipfilter
from edgegw_tx.policy.forwarded import UNKNOWN, client_address
from edgegw_tx.policy.networks import Networks, address_text, parse_network, read_address
from edgegw_tx.policy.part import PolicyRequest

PROPERTIES = settings(max_examples=200, deadline=None, database=None)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "policies.md"


def _refused(config: dict[str, Any]) -> tuple[str, str]:
    """The (field, message) of the 400 ``config`` gets from the part's schema."""
    try:
        check_schema(ipfilter.SCHEMA, config, prefix="policy.ip")
    except BadRequest as e:
        return str(e.extra["field"]), e.message
    raise AssertionError(f"{config!r} passed the schema")


def _request(peer: str | None, forwarded: str | None = None) -> PolicyRequest:
    headers = {} if forwarded is None else {"x-forwarded-for": forwarded}
    return PolicyRequest(method="GET", path="/", headers=headers, client_ip=peer)


def _verdict(config: dict[str, Any], peer: str | None, forwarded: str | None = None) -> Any:
    extra: list[tuple[str, str]] = []
    verdict = ipfilter.build(config).check(_request(peer, forwarded), extra)
    assert extra == [], extra
    return verdict


class SchemaTests(unittest.TestCase):
    """What the schema refuses, each with a 400 naming the field."""

    def test_full_config_passes(self) -> None:
        """allow, deny and trusted_proxies with IPv4, IPv6 and single addresses pass."""
        config = {
            "allow": ["10.0.0.0/8", "2001:db8::/32"],
            "deny": ["10.1.2.3"],
            "trusted_proxies": ["192.168.0.0/16", "::1"],
        }
        check_schema(ipfilter.SCHEMA, config)
        self.assertEqual(ipfilter.problems(config), [])

    def test_unknown_field_refused(self) -> None:
        """A field the part does not have is refused by name."""
        field, message = _refused({"alow": ["10.0.0.0/8"]})
        self.assertEqual(field, "policy.ip.alow")
        self.assertIn("unknown field", message)

    def test_empty_allow_refused(self) -> None:
        """An empty allow list (which would refuse everyone) is refused; deny says that."""
        field, message = _refused({"allow": []})
        self.assertEqual(field, "policy.ip.allow")
        self.assertIn("at least 1", message)

    def test_too_many_cidrs_refused(self) -> None:
        """More than MAX_CIDRS entries in a list is refused, naming the limit."""
        field, message = _refused({"deny": ["10.0.0.1"] * (ipfilter.MAX_CIDRS + 1)})
        self.assertEqual(field, "policy.ip.deny")
        self.assertIn(str(ipfilter.MAX_CIDRS), message)

    def test_not_a_cidr_refused(self) -> None:
        """A value that is not shaped like an address is refused with an example of one."""
        field, message = _refused({"trusted_proxies": ["proxy.example.com"]})
        self.assertEqual(field, "policy.ip.trusted_proxies[0]")
        self.assertIn("192.0.2.0/24", message)

    def test_every_field_described(self) -> None:
        """Every field has a description (they become the OpenAPI document and docs)."""
        for name, field in ipfilter.SCHEMA["properties"].items():
            self.assertTrue(field.get("description"), name)
            self.assertTrue(field["items"].get("description"), name)


class ProblemsTests(unittest.TestCase):
    """What ``problems`` finds beyond the schema."""

    def test_host_bits_named_with_the_network(self) -> None:
        """A CIDR with host bits set is a problem that says which network was meant."""
        self.assertEqual(
            ipfilter.problems({"allow": ["10.0.0.0/8", "10.0.0.1/8"]}),
            [("allow[1]", "'10.0.0.1/8' has host bits set: the network is 10.0.0.0/8")],
        )

    def test_unparseable_cidrs_named_by_index(self) -> None:
        """Every bad entry of every list is reported with its field and index."""
        found = ipfilter.problems(
            {"deny": ["300.0.0.0/8"], "trusted_proxies": ["::1", "10.0.0.0/33"]}
        )
        self.assertEqual([field for field, _ in found], ["deny[0]", "trusted_proxies[1]"])
        self.assertIn("not an IPv4 or IPv6 address or network", found[0][1])


class AnyTextTests(unittest.TestCase):
    """Whatever text arrives, the answer is a problem or an address, never an exception."""

    @PROPERTIES
    @given(st.text(alphabet="0123456789abcdefABCDEF:./[]% \x00", max_size=45))
    def test_cidr_text(self, text: str) -> None:
        """``problems`` on any CIDR-like text lists a problem (a 400) or none, and a CIDR with none builds."""
        if not ipfilter.problems({"deny": [text]}):
            ipfilter.build({"deny": [text]})

    @PROPERTIES
    @given(st.text(max_size=60))
    def test_forwarded_text(self, text: str) -> None:
        """Any X-Forwarded-For from a trusted proxy gives an address or UNKNOWN."""
        result = client_address("10.0.0.1", {"x-forwarded-for": text}, Networks.parse(["10.0.0.0/8"]))
        self.assertTrue(result == UNKNOWN or read_address(result) is not None, result)


class NetworksTests(unittest.TestCase):
    """``Networks``: membership by binary search over merged ranges."""

    def test_boundaries(self) -> None:
        """The first and last address of a network are in it; their neighbours are not."""
        networks = Networks.parse(["10.0.0.0/24", "2001:db8::/64"])
        self.assertIn(read_address("10.0.0.0"), networks)
        self.assertIn(read_address("10.0.0.255"), networks)
        self.assertNotIn(read_address("9.255.255.255"), networks)
        self.assertNotIn(read_address("10.0.1.0"), networks)
        self.assertIn(read_address("2001:db8::ffff"), networks)
        self.assertNotIn(read_address("2001:db8:0:1::"), networks)

    def test_families_kept_apart(self) -> None:
        """An IPv4 network never matches an IPv6 address with the same number, nor the reverse."""
        networks = Networks.parse(["0.0.0.0/0"])
        self.assertIn(read_address("203.0.113.9"), networks)
        self.assertNotIn(read_address("::1"), networks)
        self.assertNotIn(read_address("0.0.0.1"), Networks.parse(["::/96"]))

    def test_mapped_network_is_ipv4(self) -> None:
        """An IPv4-mapped IPv6 network in a rule is read as its IPv4 network."""
        self.assertEqual(str(parse_network("::ffff:10.0.0.0/104")), "10.0.0.0/8")

    @PROPERTIES
    @given(
        st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=20),
        st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
    )
    def test_agrees_with_ipaddress(self, cidrs: list[tuple[int, int]], addresses: list[int]) -> None:
        """For any IPv4 networks, overlapping or not, membership is what ipaddress says."""
        networks = [ip_network((n, prefix), strict=False) for n, prefix in cidrs]
        merged = Networks(networks)
        for number in addresses:
            address = IPv4Address(number)
            self.assertEqual((4, number) in merged, any(address in n for n in networks), str(address))


class ReadAddressTests(unittest.TestCase):
    """``read_address``: addresses as peers and proxies write them."""

    def test_forms(self) -> None:
        """Plain, spaced, bracketed and with a port, IPv4 and IPv6 all parse to the address."""
        cases = {
            "192.0.2.1": "192.0.2.1",
            " 192.0.2.1 ": "192.0.2.1",
            "192.0.2.1:8080": "192.0.2.1",
            "2001:DB8::1": "2001:db8::1",
            "[2001:db8::1]": "2001:db8::1",
            "[2001:db8::1]:443": "2001:db8::1",
            "::ffff:192.0.2.1": "192.0.2.1",
        }
        for text, expected in cases.items():
            self.assertEqual(address_text(read_address(text)), expected, text)

    def test_families(self) -> None:
        """An address is (family, number); an IPv4-mapped one is IPv4; an IPv6 zone is dropped."""
        self.assertEqual(read_address("::ffff:192.0.2.1"), (4, 0xC0000201))
        self.assertEqual(read_address("2001:db8::1"), (6, 0x20010DB8 << 96 | 1))
        self.assertEqual(read_address("fe80::1%eth0"), read_address("fe80::1"))

    @PROPERTIES
    @given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
    def test_agrees_with_ipaddress(self, address: IPv4Address | IPv6Address) -> None:
        """Any address reads as ipaddress's number and family, and prints as ipaddress prints it."""
        mapped = getattr(address, "ipv4_mapped", None)
        expected = mapped or address
        self.assertEqual(read_address(str(address)), (expected.version, int(expected)))
        self.assertEqual(address_text((expected.version, int(expected))), str(expected))

    def test_garbage(self) -> None:
        """Anything else is no address (None), never an exception."""
        for text in ("", "unknown", "192.0.2.1:http", "[2001:db8::1", "[::1]x", "999.0.0.1", "010.0.0.1", "1.2.3", "1.2.3.4\x00", None):
            self.assertIsNone(read_address(text), text)


class ClientAddressTests(unittest.TestCase):
    """``client_address``: the peer, or X-Forwarded-For walked from the right past trusted proxies."""

    trusted = Networks.parse(["10.0.0.0/8", "2001:db8:ffff::/48"])

    def test_never_trusted_by_default(self) -> None:
        """Without trusted proxies X-Forwarded-For is ignored: the peer is the client."""
        headers = {"x-forwarded-for": "203.0.113.7"}
        self.assertEqual(client_address("10.0.0.1", headers), "10.0.0.1")

    def test_untrusted_peer_header_ignored(self) -> None:
        """A peer not among the trusted proxies is the client, whatever its header says."""
        headers = {"x-forwarded-for": "203.0.113.7"}
        self.assertEqual(client_address("198.51.100.1", headers, self.trusted), "198.51.100.1")

    def test_rightmost_untrusted_is_the_client(self) -> None:
        """Entries a client forged on the left are not believed: the walk stops at the first untrusted one."""
        headers = {"x-forwarded-for": "1.2.3.4, 203.0.113.7, 10.0.0.2"}
        self.assertEqual(client_address("10.0.0.1", headers, self.trusted), "203.0.113.7")

    def test_all_trusted_leftmost(self) -> None:
        """When every entry is a trusted proxy, the leftmost is the client."""
        headers = {"x-forwarded-for": "10.0.0.9, 10.0.0.2"}
        self.assertEqual(client_address("10.0.0.1", headers, self.trusted), "10.0.0.9")

    def test_no_header_peer(self) -> None:
        """A trusted peer that sends no X-Forwarded-For is itself the client."""
        self.assertEqual(client_address("10.0.0.1", {}, self.trusted), "10.0.0.1")

    def test_ipv6_and_ports(self) -> None:
        """IPv6 proxies and entries with brackets and ports are read; the result is in normal form."""
        headers = {"x-forwarded-for": "[2001:DB8::7]:5555 , 2001:db8:ffff::2"}
        self.assertEqual(client_address("2001:db8:ffff::1", headers, self.trusted), "2001:db8::7")

    def test_repeated_header_lines(self) -> None:
        """Two X-Forwarded-For lines (joined with ", " by the gateway) read as one list; blanks skipped."""
        headers = {"x-forwarded-for": "203.0.113.7, , 10.0.0.3"}
        self.assertEqual(client_address("10.0.0.1", headers, self.trusted), "203.0.113.7")

    def test_mapped_peer(self) -> None:
        """An IPv4-mapped IPv6 peer is a trusted IPv4 proxy and an IPv4 client."""
        headers = {"x-forwarded-for": "203.0.113.7"}
        self.assertEqual(client_address("::ffff:10.0.0.1", headers, self.trusted), "203.0.113.7")
        self.assertEqual(client_address("::ffff:198.51.100.1", {}, self.trusted), "198.51.100.1")

    @PROPERTIES
    @given(st.lists(st.tuples(st.booleans(), st.integers(0, 2**24 - 1)), min_size=1, max_size=8))
    def test_forged_entries_never_believed(self, hops: list[tuple[bool, int]]) -> None:
        """For any chain, the client is the rightmost untrusted entry (the leftmost when all are trusted): nothing left of it counts."""
        texts = [address_text((4, (10 << 24 if trusted else 203 << 24) | n)) for trusted, n in hops]
        untrusted = [text for (trusted, _), text in zip(hops, texts) if not trusted]
        expected = untrusted[-1] if untrusted else texts[0]
        headers = {"x-forwarded-for": ", ".join(texts)}
        self.assertEqual(client_address("10.0.0.1", headers, self.trusted), expected)

    def test_unreadable_entry_unknown(self) -> None:
        """An entry that is no address where the walk stops makes the client unknown."""
        headers = {"x-forwarded-for": "203.0.113.7, proxy-a"}
        self.assertEqual(client_address("10.0.0.1", headers, self.trusted), UNKNOWN)

    def test_no_peer_unknown(self) -> None:
        """Without a peer address (not a TCP connection) the client is unknown."""
        self.assertEqual(client_address(None, {}, self.trusted), UNKNOWN)


class CheckTests(unittest.TestCase):
    """The compiled part on requests: 403 with a JSON body, or None."""

    def assertRefused(self, verdict: Any, message: str) -> None:
        """``verdict`` is a 403 whose JSON body's error is ``message``."""
        self.assertIsNotNone(verdict)
        status, headers, body = verdict
        self.assertEqual(status, 403)
        self.assertIn(("content-type", "application/json"), headers)
        self.assertEqual(json.loads(body), {"error": message})

    def test_allow_only(self) -> None:
        """With allow, an address inside passes and one outside is refused, named."""
        config = {"allow": ["192.0.2.0/24"]}
        self.assertIsNone(_verdict(config, "192.0.2.5"))
        self.assertRefused(_verdict(config, "198.51.100.5"), "client address 198.51.100.5 is not allowed")

    def test_deny_only(self) -> None:
        """With deny alone, everyone else passes."""
        config = {"deny": ["192.0.2.0/24"]}
        self.assertIsNone(_verdict(config, "198.51.100.5"))
        self.assertRefused(_verdict(config, "192.0.2.5"), "client address 192.0.2.5 is denied")

    def test_deny_wins(self) -> None:
        """An address in both allow and deny is refused."""
        config = {"allow": ["192.0.2.0/24"], "deny": ["192.0.2.128/25"]}
        self.assertIsNone(_verdict(config, "192.0.2.5"))
        self.assertRefused(_verdict(config, "192.0.2.200"), "client address 192.0.2.200 is denied")

    def test_ipv6(self) -> None:
        """IPv6 rules match IPv6 clients; an IPv6 client is outside an IPv4-only allow."""
        config = {"allow": ["2001:db8::/32", "192.0.2.0/24"]}
        self.assertIsNone(_verdict(config, "2001:db8:1::1"))
        self.assertRefused(_verdict(config, "2001:db9::1"), "client address 2001:db9::1 is not allowed")
        self.assertRefused(_verdict({"allow": ["0.0.0.0/0"]}, "::1"), "client address ::1 is not allowed")

    def test_mapped_peer_matches_ipv4_rules(self) -> None:
        """A dual-stack listener's ::ffff:a.b.c.d peer is judged by the IPv4 rules."""
        self.assertRefused(_verdict({"deny": ["192.0.2.0/24"]}, "::ffff:192.0.2.9"), "client address 192.0.2.9 is denied")
        self.assertIsNone(_verdict({"allow": ["192.0.2.0/24"]}, "::ffff:192.0.2.9"))

    def test_forwarded_only_from_trusted(self) -> None:
        """X-Forwarded-For decides only behind a trusted proxy; a client cannot forge its way in."""
        config = {"allow": ["203.0.113.0/24"], "trusted_proxies": ["10.0.0.0/8"]}
        self.assertIsNone(_verdict(config, "10.0.0.1", "203.0.113.7"))
        self.assertRefused(
            _verdict(config, "198.51.100.1", "203.0.113.7"), "client address 198.51.100.1 is not allowed"
        )
        self.assertRefused(
            _verdict(config, "10.0.0.1", "203.0.113.7, 198.51.100.1"),
            "client address 198.51.100.1 is not allowed",
        )

    def test_forwarded_ignored_without_trusted(self) -> None:
        """Without trusted_proxies, a header naming an allowed address changes nothing."""
        config = {"allow": ["203.0.113.0/24"]}
        self.assertRefused(_verdict(config, "10.0.0.1", "203.0.113.7"), "client address 10.0.0.1 is not allowed")

    def test_unknown_client_refused(self) -> None:
        """A client whose address cannot be told is refused, even by deny-only rules."""
        config = {"deny": ["192.0.2.0/24"], "trusted_proxies": ["10.0.0.0/8"]}
        self.assertRefused(_verdict(config, "10.0.0.1", "nonsense"), "the client's address could not be determined")
        self.assertRefused(_verdict(config, None), "the client's address could not be determined")

    def test_many_cidrs(self) -> None:
        """MAX_CIDRS disjoint networks: each one's addresses pass, the gaps between them do not."""
        cidrs = [f"10.{i // 256}.{i % 256}.0/25" for i in range(ipfilter.MAX_CIDRS)]
        check = ipfilter.build({"allow": cidrs})
        for i in (0, 1, ipfilter.MAX_CIDRS // 2, ipfilter.MAX_CIDRS - 1):
            inside = f"10.{i // 256}.{i % 256}.127"
            gap = f"10.{i // 256}.{i % 256}.128"
            self.assertIsNone(check.check(_request(inside), []), inside)
            self.assertIsNotNone(check.check(_request(gap), []), gap)


class DocsTests(unittest.TestCase):
    """docs/policies.md says what ipfilter.SCHEMA says."""

    def test_table_matches_schema(self) -> None:
        """The ip table has the fields, types and limits of ipfilter.SCHEMA (schemadocs renders it unchanged)."""
        document = DOCS.read_text(encoding="utf-8")
        self.patch(schemadocs, "TABLES", {**schemadocs.TABLES, "policy-ip": ipfilter.SCHEMA})
        begin = document.index("<!-- schema:policy-ip -->\n")
        table = document[begin : document.index("<!-- /schema -->\n", begin) + len("<!-- /schema -->\n")]
        self.assertEqual(schemadocs.render(table), table)


class ResolvedClientTests(unittest.TestCase):
    """The ``ip`` part hands the client it resolved to the parts after it."""

    def test_client_behind_a_trusted_proxy_replaces_the_peer(self) -> None:
        """Behind a trusted proxy, request.client_ip becomes X-Forwarded-For's client (in its normal form)."""
        request = _request("10.0.0.1", "2001:DB8::7, 10.0.0.2")
        self.assertIsNone(ipfilter.build({"trusted_proxies": ["10.0.0.0/8"]}).check(request, []))
        self.assertEqual(request.client_ip, "2001:db8::7")

    def test_without_trusted_proxies_the_peer_stays(self) -> None:
        """Without trusted proxies the header is ignored and request.client_ip is left as it was."""
        request = _request("10.0.0.1", "192.0.2.9")
        self.assertIsNone(ipfilter.build({"deny": ["198.51.100.0/24"]}).check(request, []))
        self.assertEqual(request.client_ip, "10.0.0.1")

    def test_ratelimit_after_ip_counts_the_real_client(self) -> None:
        """Compiled together, a rate limit keyed by ip counts the forwarded clients apart, not the proxy."""
        from twisted.internet.task import Clock

        from edgegw_tx.policy import model
        from edgegw_tx.policy.part import PolicyContext

        parts = {"ip": {"trusted_proxies": ["10.0.0.0/8"]}, "rate_limit": {"requests": 1, "per_seconds": 60}}
        policy = model.compile(model.Effective(parts, {"ip": "endpoint", "rate_limit": "endpoint"}),
                               PolicyContext(Clock().seconds))
        assert policy is not None
        self.assertIsNone(policy.check(_request("10.0.0.1", "192.0.2.1"), []))
        self.assertIsNone(policy.check(_request("10.0.0.1", "192.0.2.2"), []))
        self.assertEqual(policy.check(_request("10.0.0.1", "192.0.2.1"), [])[0], 429)  # type: ignore[index]
