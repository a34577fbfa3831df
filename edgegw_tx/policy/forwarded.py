"""
Who the client is when the gateway stands behind proxies.

The TCP peer is the client unless it is one of the configured trusted
proxies; ``X-Forwarded-For`` is read only then, since anyone can send one.
Each proxy appends the address it received the request from, so the list is
walked from the right: trusted proxies are skipped, and the first address
that is not one is the client (what the nearest trusted proxy saw, which a
client cannot forge).  When every address is a trusted proxy, the leftmost is
the client.  An entry that is no address where the walk stops leaves the
client ``UNKNOWN``: a trusted proxy wrote something the gateway cannot read.

``ip`` rules and the rate limiter's ``ip`` key both ask ``client_address``.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgegw_tx.policy.networks import Address, Networks, address_text, read_address

__all__ = ["UNKNOWN", "client_address", "client_ip"]

UNKNOWN = "unknown"
"""The client address when it cannot be told (the name RFC 7239 gives an undisclosed node)."""

_NOBODY = Networks()


def client_ip(
    peer: str | None, headers: Mapping[str, str], trusted: Networks = _NOBODY
) -> Address | None:
    """
    The client's address: ``peer`` (the TCP peer's address), or, when it is
    in ``trusted``, the first untrusted entry of ``X-Forwarded-For`` from the
    right (``networks.Address``); None when it cannot be told.
    """
    address = read_address(peer)
    if address is None or address not in trusted:
        return address
    forwarded = headers.get("x-forwarded-for")
    if not forwarded:
        return address
    for entry in reversed(forwarded.split(",")):
        if not entry or entry.isspace():
            continue
        hop = read_address(entry)
        if hop is None:
            return None
        if hop not in trusted:
            return hop
        address = hop
    return address


def client_address(peer: str | None, headers: Mapping[str, str], trusted: Networks = _NOBODY) -> str:
    """``client_ip`` as text in its normal form (``192.0.2.1``, ``2001:db8::1``), or ``UNKNOWN``."""
    address = client_ip(peer, headers, trusted)
    return UNKNOWN if address is None else address_text(address)
