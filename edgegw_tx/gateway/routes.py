"""
The route table: (host, method, path) → the target that serves it.

Structure: domain → method → a trie of path segments.  Each trie node has a
dict of literal children and at most one parameter child; parameter *names*
live on the route (the leaf), so ``/a/{x}/c`` and ``/a/{y}/d`` share the
parameter node.

Matching rules (see also ``edgegw_tx.paths``):

* Host: lower-cased, port and a trailing ``.`` stripped; the exact domain is
  tried first, then ``*``.  A missing host only reaches ``*``.
* Path: the dispatcher hands over the path's normal form
  (``edgegw_tx.gateway.target``); it is split on ``/`` first, then each
  segment is percent-decoded once (UTF-8, invalid sequences become U+FFFD), so
  ``%2F`` stays inside one segment and parameter values are decoded strings.
* At every level a literal child is tried before the parameter child, with
  backtracking: ``/users/me`` beats ``/users/{id}``, and ``/a/{x}/c`` still
  serves ``/a/b/c`` when ``/a/b/d`` exists.
* A parameter matches one non-empty segment.  So a trailing slash is a
  different path: ``/hello/`` does not match ``/hello`` (nor ``/{x}``).
* Methods are compared exactly (HTTP methods are case-sensitive).  A HEAD
  request with no HEAD route for its path is served by the GET route, as
  RFC 9110 §9.3.2 expects (the HTTP layer sends no body); per domain, so an
  exact domain's GET beats a ``*`` HEAD.
* 405 is returned when the path matches, under the exact domain or ``*``, for
  some other method; ``allowed`` lists exactly the methods that would match
  (HEAD among them wherever GET is).

Matches are remembered per (Host header, method, path), up to
``MATCH_CACHE`` of them, and forgotten on every change to the table: a request
for a path seen before costs one dict lookup, however many routes there are.
Only short keys are remembered (``MATCH_KEY_MAX`` characters of host and path),
so hostile long URLs cannot make the memory grow past a few MB.

A key (an endpoint) holds one or several routes to one target and one
traffic policy (``edgegw_tx.policy.model.CompiledPolicy``, or None: a route
with none pays one attribute read in the dispatcher): ``place``
gives a key its whole set at once, ``add`` a set of one, ``remove`` takes the
set away.  Mutations happen on the reactor thread, so each is atomic with
respect to requests: every route of the new set is checked for conflicts
before anything changes (one conflict refuses the whole set), a route kept
swaps its leaf in one assignment, and a route being replaced (redeploy) or
moved is never missing.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from mypy_extensions import mypyc_attr

from edgegw_tx.paths import Literal, Param, PathPattern, parse_pattern, validate_method

__all__ = [
    "Match",
    "MethodNotAllowed",
    "NO_ROUTE",
    "NoRoute",
    "RouteConflict",
    "RouteSpec",
    "RouteTable",
]


MATCH_CACHE = 4096
"""How many matches the table remembers; when full it starts over."""

MATCH_KEY_MAX = 256
"""The longest host plus path, in characters, whose match is remembered."""

_DOMAIN = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\])\Z")


#: One route of a key: ``(domain, method, pattern)``.
RouteSpec = tuple[str, str, PathPattern | str]


class RouteConflict(ValueError):
    """Another key already serves the same (domain, method, path shape)."""

    def __init__(self, message: str, existing_key: Hashable):
        super().__init__(message)
        self.existing_key = existing_key


@dataclass(slots=True)
class Match:
    """A route matched; ``params`` maps parameter names to decoded values."""

    key: Hashable
    target: Any
    params: dict[str, str]
    #: the route's compiled traffic policy (``CompiledPolicy``), or None
    policy: Any = None


class NoRoute:
    """No route matches the host and path, whatever the method."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ROUTE"


NO_ROUTE = NoRoute()


@dataclass(slots=True)
class MethodNotAllowed:
    """The path matches, but only for the (sorted) ``allowed`` methods."""

    allowed: list[str]


class _Node:
    __slots__ = ("literals", "param", "entry")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.entry: _Entry | None = None

    def empty(self) -> bool:
        return self.entry is None and self.param is None and not self.literals


class _Entry:
    """One registered route; never mutated, so swapping it is atomic."""

    __slots__ = ("key", "target", "names", "domain", "method", "pattern", "policy")

    def __init__(
        self,
        key: Hashable,
        target: Any,
        names: tuple[str, ...],
        domain: str,
        method: str,
        pattern: PathPattern,
        policy: Any = None,
    ) -> None:
        self.key = key
        self.target = target
        self.names = names
        self.domain = domain
        self.method = method
        self.pattern = pattern
        self.policy = policy


def normalize_host(host: str | None) -> str:
    """
    The routing form of a Host header: lower case, no port, no trailing dot.
    IPv6 literals keep their brackets (``[::1]:8080`` → ``[::1]``).
    """
    if not host:
        return ""
    host = host.lower()
    if host[0] == "[":
        end = host.find("]")
        return host if end == -1 else host[: end + 1]
    colon = host.find(":")
    if colon != -1:
        host = host[:colon]
    if host and host[-1] == ".":
        host = host[:-1]
    return host


def _split(path: str) -> list[str] | tuple[()] | None:
    """Decoded segments of ``path``, or None if it is not an origin-form path."""
    if path == "/":
        return ()
    if not path or path[0] != "/":
        return None
    segments = path[1:].split("/")
    if "%" in path:
        segments = [unquote(s) if "%" in s else s for s in segments]
    return segments


def _walk(node: _Node, segments: Sequence[str], index: int, values: list[str]) -> _Entry | None:
    """Depth-first: literal child, then parameter child; ``values`` collects captures."""
    if index == len(segments):
        return node.entry
    segment = segments[index]
    child = node.literals.get(segment)
    if child is not None:
        found = _walk(child, segments, index + 1, values)
        if found is not None:
            return found
    child = node.param
    if child is not None and segment:
        values.append(segment)
        found = _walk(child, segments, index + 1, values)
        if found is not None:
            return found
        values.pop()
    return None


# Compiled (edgegw_tx/compiled.py); tests subclass it to record what it is told.
@mypyc_attr(allow_interpreted_subclasses=True)
class RouteTable:
    """Domain → method → segment trie.  Use from the reactor thread only."""

    def __init__(self) -> None:
        self._domains: dict[str, dict[str, _Node]] = {}
        # key -> its routes' entries, in the order placed.
        self._entries: dict[Hashable, list[_Entry]] = {}
        self._matches: dict[tuple[str | None, str, str], Match] = {}
        # True while the gateway restores its running endpoints at start: a
        # request no route matches may be for one not back yet (503, not 404).
        self.restoring = False

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def add(
        self,
        key: Hashable,
        domain: str,
        method: str,
        pattern: PathPattern | str,
        target: Any,
        policy: Any = None,
    ) -> None:
        """Give ``key`` the one route (domain, method, pattern) to ``target``: ``place`` with one route."""
        self.place(key, ((domain, method, pattern),), target, policy)

    def place(
        self, key: Hashable, routes: Sequence[RouteSpec], target: Any, policy: Any = None
    ) -> None:
        """
        Give ``key`` exactly ``routes``, all to ``target`` under ``policy``
        (a ``CompiledPolicy``, or None), replacing what it had in one step:
        routes it keeps are swapped in place, new ones added before the ones
        it no longer has are removed, so no request sees a gap, nor a request
        matched under the old policy with the new target.

        :param routes: ``(domain, method, pattern)`` each; ``domain`` a host
            name, or ``*`` for any host.  At least one.
        :raises RouteConflict: another key (or another of ``routes``) serves
            the same domain, method and pattern shape; the table is unchanged.
        :raises ValueError: no route, or a bad domain, method or pattern.
        """
        if not routes:
            raise ValueError("a key needs at least one route")
        entries: list[_Entry] = []
        shapes: dict[tuple[str, str, str], _Entry] = {}
        for domain, method, pattern in routes:
            if isinstance(pattern, str):
                pattern = parse_pattern(pattern)
            domain = self._domain(domain)
            method = validate_method(method)
            entry = _Entry(key, target, pattern.param_names, domain, method, pattern, policy)
            same = shapes.get((domain, method, pattern.shape))
            if same is not None:
                raise RouteConflict(
                    f"{method} {pattern.text} on {domain} is given twice "
                    f"(as {same.pattern.text})",
                    key,
                )
            existing = self._leaf(domain, method, pattern.segments)
            if existing is not None and existing.entry is not None and existing.entry.key != key:
                raise RouteConflict(
                    f"{method} {pattern.text} on {domain} conflicts with "
                    f"{existing.entry.pattern.text} (route {existing.entry.key!r})",
                    existing.entry.key,
                )
            shapes[(domain, method, pattern.shape)] = entry
            entries.append(entry)

        for entry in entries:
            self._link(entry)
        old = self._entries.get(key, [])
        self._entries[key] = entries
        self._matches.clear()
        for entry in old:
            # A leaf the new set took over no longer holds ``entry``: left alone.
            self._unlink(entry)

    def _link(self, entry: _Entry) -> None:
        """Put ``entry`` at its leaf (made as needed), replacing what was there."""
        node = self._domains.setdefault(entry.domain, {}).setdefault(entry.method, _Node())
        for segment in entry.pattern.segments:
            if isinstance(segment, Param):
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                child = node.literals.get(segment.text)
                if child is None:
                    child = node.literals[segment.text] = _Node()
                node = child
        node.entry = entry

    def routes(self, key: Hashable) -> list[tuple[str, str, str]]:
        """``key``'s routes as ``(domain, method, pattern text)``, in the order placed."""
        return [(e.domain, e.method, e.pattern.text) for e in self._entries.get(key, [])]

    def policy_of(self, key: Hashable) -> Any:
        """The policy ``key``'s routes were placed with (None: none, or no such key)."""
        entries = self._entries.get(key)
        return entries[0].policy if entries else None

    def remove(self, key: Hashable) -> bool:
        """Remove every route under ``key``; False if there was none."""
        entries = self._entries.pop(key, None)
        if entries is None:
            return False
        for entry in entries:
            self._unlink(entry)
        self._matches.clear()
        return True

    def match(
        self, host: str | None, method: str, path: str
    ) -> Match | NoRoute | MethodNotAllowed:
        """
        Find the route for a request.

        :param host: the Host header as received (port and case are ignored).
        :param path: the path in its normal form (still percent-encoded),
            without the query.
        """
        key = (host, method, path)
        known = self._matches.get(key)
        if known is not None:
            # A new Match with its own params: the caller may change them.
            return Match(known.key, known.target, known.params.copy(), known.policy)
        found = self._match(host, method, path)
        if found.__class__ is Match and len(path) + len(host or "") <= MATCH_KEY_MAX:
            if len(self._matches) >= MATCH_CACHE:
                self._matches.clear()
            self._matches[key] = Match(found.key, found.target, found.params.copy(), found.policy)
        return found

    def _match(
        self, host: str | None, method: str, path: str
    ) -> Match | NoRoute | MethodNotAllowed:
        segments = _split(path)
        if segments is None:
            return NO_ROUTE
        domains = self._domains
        host = normalize_host(host)
        exact = domains.get(host) if host != "*" else None
        wild = domains.get("*")
        values: list[str] = []
        tried = (method, "GET") if method == "HEAD" else (method,)
        for methods in (exact, wild):
            if methods is not None:
                for each in tried:
                    root = methods.get(each)
                    if root is not None:
                        entry = _walk(root, segments, 0, values)
                        if entry is not None:
                            return Match(
                                entry.key,
                                entry.target,
                                dict(zip(entry.names, values)),
                                entry.policy,
                            )
        allowed = set()
        for methods in (exact, wild):
            if methods is not None:
                for other, root in methods.items():
                    if other != method and _walk(root, segments, 0, []) is not None:
                        allowed.add(other)
        if allowed:
            if "GET" in allowed:
                allowed.add("HEAD")
            return MethodNotAllowed(sorted(allowed))
        return NO_ROUTE

    @staticmethod
    def _domain(domain: str) -> str:
        if not isinstance(domain, str):
            raise ValueError(f"domain must be a string, not {type(domain).__name__}")
        normal = domain.strip().lower().rstrip(".")
        if normal == "*":
            return normal
        if not _DOMAIN.match(normal):
            raise ValueError(
                f"invalid domain {domain!r} (a host name without port, "
                "an IP address, or '*' for any host)"
            )
        return normal

    def _leaf(self, domain: str, method: str, segments: Sequence[Literal | Param]) -> _Node | None:
        """The node for an exact (domain, method, shape), if it exists."""
        node = self._domains.get(domain, {}).get(method)
        for segment in segments:
            if node is None:
                return None
            if isinstance(segment, Param):
                node = node.param
            else:
                node = node.literals.get(segment.text)
        return node

    def _unlink(self, entry: _Entry) -> None:
        """Clear ``entry``'s leaf (if it still holds it) and prune empty nodes."""
        methods = self._domains.get(entry.domain)
        if methods is None:
            return
        root = methods.get(entry.method)
        if root is None:
            return
        trail: list[tuple[_Node, Any]] = []
        node = root
        for segment in entry.pattern.segments:
            if isinstance(segment, Param):
                child = node.param
                trail.append((node, None))
            else:
                child = node.literals.get(segment.text)
                trail.append((node, segment.text))
            if child is None:
                return
            node = child
        if node.entry is not entry:
            return
        node.entry = None
        while trail and node.empty():
            parent, label = trail.pop()
            if label is None:
                parent.param = None
            else:
                del parent.literals[label]
            node = parent
        if root.empty():
            del methods[entry.method]
            if not methods:
                del self._domains[entry.domain]
