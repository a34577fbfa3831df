"""
IP addresses and sets of networks, parsed once and matched per request.

The ``ip`` part's ``allow``/``deny`` lists and every ``trusted_proxies`` list
become a ``Networks``: its CIDRs merged into disjoint ranges of integers,
sorted per address family, so a lookup is one binary search (``bisect``, in
C) whether the list holds one network or thousands.  An IPv4-mapped IPv6
address (``::ffff:192.0.2.1``, what a dual-stack listener reports for an IPv4
peer) is read as the IPv4 address it carries, so IPv4 rules match it; an
IPv4-mapped network in a rule is read as its IPv4 network the same way.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_network
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton

__all__ = [
    "Address",
    "IPNetwork",
    "Networks",
    "address_text",
    "network_problem",
    "parse_network",
    "read_address",
]

Address = tuple[int, int]
"""An address as matched: ``(4 or 6, the address as a number)``."""

IPNetwork = IPv4Network | IPv6Network

_MAPPED = IPv6Network("::ffff:0:0/96")
_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def read_address(text: str | None) -> Address | None:
    """
    ``text`` as an address, or None when it is none: white space, brackets
    around an IPv6 address and a port after either are allowed (what proxies
    write in ``X-Forwarded-For``), an IPv6 zone is dropped; IPv4-mapped IPv6
    comes back as IPv4.  ``inet_pton`` reads it: a tenth of what ``ipaddress``
    costs, on every request an ``ip`` rule covers.
    """
    if not text:
        return None
    host = text.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or not _is_port_suffix(host[end + 1 :]):
            return None
        host = host[1:end]
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
        if not port.isdigit():
            return None
    try:
        if ":" not in host:
            return 4, int.from_bytes(inet_pton(AF_INET, host), "big")
        packed = inet_pton(AF_INET6, host.partition("%")[0])
    except (OSError, ValueError):  # not an address; ValueError: a NUL in it
        return None
    if packed[:12] == _MAPPED_PREFIX:
        return 4, int.from_bytes(packed[12:], "big")
    return 6, int.from_bytes(packed, "big")


def address_text(address: Address) -> str:
    """``address`` in its normal form: ``192.0.2.1``, ``2001:db8::1``."""
    version, number = address
    if version == 4:
        return inet_ntop(AF_INET, number.to_bytes(4, "big"))
    return inet_ntop(AF_INET6, number.to_bytes(16, "big"))


def _is_port_suffix(text: str) -> bool:
    """Nothing, or ``:`` and digits (what may follow ``[address]``)."""
    return text == "" or (text[:1] == ":" and text[1:].isdigit())


def parse_network(text: str) -> IPNetwork:
    """
    ``text`` (``192.0.2.0/24``, ``2001:db8::/32``, or one address) as a
    network; ValueError saying why not, host bits set included.
    """
    network = ip_network(text.strip(), strict=True)
    if isinstance(network, IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # a subnet of ::ffff:0:0/96 carries an IPv4 address
        return IPv4Network((mapped, network.prefixlen - 96))
    return network


def network_problem(text: str) -> str | None:
    """Why ``text`` is no network in CIDR notation, in words for a 400; None if it is one."""
    try:
        parse_network(text)
    except ValueError:
        try:
            loose = ip_network(text.strip(), strict=False)
        except ValueError:
            return f"{text!r} is not an IPv4 or IPv6 address or network such as 192.0.2.0/24 or 2001:db8::/32"
        return f"{text!r} has host bits set: the network is {loose}"
    return None


class Networks:
    """A set of networks to test addresses (``read_address``) against: ``address in networks``."""

    __slots__ = ("_starts", "_ends", "_count")

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        ranges: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        count = 0
        for network in networks:
            ranges[network.version].append(
                (int(network.network_address), int(network.broadcast_address))
            )
            count += 1
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for version, spans in ranges.items():
            starts: list[int] = []
            ends: list[int] = []
            for start, end in sorted(spans):
                if ends and start <= ends[-1] + 1:
                    ends[-1] = max(ends[-1], end)
                else:
                    starts.append(start)
                    ends.append(end)
            self._starts[version] = starts
            self._ends[version] = ends
        self._count = count

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Networks:
        """The networks written as ``texts`` (each checked by ``network_problem`` first)."""
        return cls(parse_network(text) for text in texts)

    def __contains__(self, address: Address) -> bool:
        version, number = address
        i = bisect_right(self._starts[version], number) - 1
        return i >= 0 and number <= self._ends[version][i]

    def __len__(self) -> int:
        """How many networks were given (before merging)."""
        return self._count

    def __repr__(self) -> str:
        return f"<Networks of {self._count}>"
