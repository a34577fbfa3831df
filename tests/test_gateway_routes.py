"""Tests for L{edgegw_tx.gateway.routes}."""

from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.gateway.routes import (
    MATCH_CACHE,
    MATCH_KEY_MAX,
    NO_ROUTE,
    Match,
    MethodNotAllowed,
    NoRoute,
    RouteConflict,
    RouteTable,
    normalize_host,
)
from edgegw_tx.paths import PatternError, parse_pattern


def table(*routes):
    """A table with (key, domain, method, pattern) routes; target = 't-' + key."""
    routes_table = RouteTable()
    for key, domain, method, pattern in routes:
        routes_table.add(key, domain, method, parse_pattern(pattern), "t-" + key)
    return routes_table


class MatchPathTests(SynchronousTestCase):
    """Paths are matched segment by segment with literal-first backtracking."""

    def test_literal(self):
        """A literal route matches its exact path with no params."""
        routes = table(("hello", "*", "GET", "/hello"))
        self.assertEqual(
            routes.match("h", "GET", "/hello"), Match("hello", "t-hello", {})
        )

    def test_root(self):
        """The root pattern matches C{/} only."""
        routes = table(("root", "*", "GET", "/"))
        self.assertEqual(routes.match("h", "GET", "/"), Match("root", "t-root", {}))
        self.assertIs(routes.match("h", "GET", "/x"), NO_ROUTE)
        self.assertIs(routes.match("h", "GET", "//"), NO_ROUTE)

    def test_param_captured(self):
        """Parameters capture their segment under their name."""
        routes = table(("p", "*", "GET", "/users/{id}/posts/{post}"))
        self.assertEqual(
            routes.match("h", "GET", "/users/42/posts/7"),
            Match("p", "t-p", {"id": "42", "post": "7"}),
        )

    def test_literal_beats_param(self):
        """C{/users/me} wins over C{/users/{id}} whatever the insertion order."""
        for order in [1, -1]:
            routes = table(
                *[
                    ("param", "*", "GET", "/users/{id}"),
                    ("me", "*", "GET", "/users/me"),
                ][::order]
            )
            self.assertEqual(routes.match("h", "GET", "/users/me").key, "me")
            self.assertEqual(
                routes.match("h", "GET", "/users/you"),
                Match("param", "t-param", {"id": "you"}),
            )

    def test_backtracking(self):
        """A failed literal branch falls back to the parameter branch."""
        routes = table(
            ("x", "*", "GET", "/a/{x}/c"),
            ("d", "*", "GET", "/a/b/d"),
        )
        self.assertEqual(routes.match("h", "GET", "/a/b/d"), Match("d", "t-d", {}))
        self.assertEqual(
            routes.match("h", "GET", "/a/b/c"), Match("x", "t-x", {"x": "b"})
        )
        self.assertIs(routes.match("h", "GET", "/a/b/e"), NO_ROUTE)

    def test_backtracking_discards_partial_captures(self):
        """Captures from an abandoned branch do not leak into the match."""
        routes = table(
            ("deep", "*", "GET", "/{a}/{b}/z"),
            ("lit", "*", "GET", "/{a}/y"),
        )
        self.assertEqual(
            routes.match("h", "GET", "/1/y/z"),
            Match("deep", "t-deep", {"a": "1", "b": "y"}),
        )

    def test_shared_param_node_keeps_names(self):
        """Routes sharing a parameter position each get their own names."""
        routes = table(
            ("c", "*", "GET", "/a/{x}/c"),
            ("d", "*", "GET", "/a/{y}/d"),
        )
        self.assertEqual(routes.match("h", "GET", "/a/1/c").params, {"x": "1"})
        self.assertEqual(routes.match("h", "GET", "/a/1/d").params, {"y": "1"})

    def test_percent_decoded_after_split(self):
        """C{%2F} stays inside its segment; params hold decoded text."""
        routes = table(("p", "*", "GET", "/files/{name}"))
        self.assertEqual(
            routes.match("h", "GET", "/files/a%2Fb%20c").params, {"name": "a/b c"}
        )
        self.assertEqual(
            routes.match("h", "GET", "/files/caf%C3%A9").params, {"name": "café"}
        )

    def test_invalid_utf8_escape_replaced(self):
        """An escape that is not UTF-8 decodes to U+FFFD rather than failing."""
        routes = table(("p", "*", "GET", "/files/{name}"))
        self.assertEqual(
            routes.match("h", "GET", "/files/%FF").params, {"name": "\ufffd"}
        )

    def test_encoded_literal(self):
        """A request's escapes are decoded before comparing with literals."""
        routes = table(("c", "*", "GET", "/café"))
        self.assertEqual(routes.match("h", "GET", "/caf%C3%A9").key, "c")
        self.assertEqual(routes.match("h", "GET", "/café").key, "c")

    def test_trailing_slash_differs(self):
        """C{/hello/} matches neither C{/hello} nor a parameter (empty segment)."""
        routes = table(("hello", "*", "GET", "/hello"), ("p", "*", "GET", "/x/{y}"))
        self.assertIs(routes.match("h", "GET", "/hello/"), NO_ROUTE)
        self.assertIs(routes.match("h", "GET", "/x/"), NO_ROUTE)

    def test_segment_count_must_match(self):
        """Longer or shorter paths than the pattern do not match."""
        routes = table(("p", "*", "GET", "/a/{b}"))
        self.assertIs(routes.match("h", "GET", "/a"), NO_ROUTE)
        self.assertIs(routes.match("h", "GET", "/a/b/c"), NO_ROUTE)

    def test_not_origin_form(self):
        """A path not starting with C{/} matches nothing."""
        routes = table(("root", "*", "GET", "/"))
        self.assertIs(routes.match("h", "GET", ""), NO_ROUTE)
        self.assertIs(routes.match("h", "GET", "http://h/"), NO_ROUTE)

    def test_match_params_are_fresh(self):
        """Each match gets its own params dict."""
        routes = table(("a", "*", "GET", "/a"))
        first = routes.match("h", "GET", "/a")
        first.params["x"] = "y"
        self.assertEqual(routes.match("h", "GET", "/a").params, {})


class MatchHostTests(SynchronousTestCase):
    """Hosts match case-insensitively without port, exact domain before C{*}."""

    def setUp(self):
        self.routes = table(
            ("exact", "api.example.com", "GET", "/x"),
            ("any", "*", "GET", "/x"),
            ("other", "*", "GET", "/only-any"),
        )

    def test_exact(self):
        """The exact domain wins over C{*}."""
        self.assertEqual(self.routes.match("api.example.com", "GET", "/x").key, "exact")

    def test_case_and_port(self):
        """Case, a port and a trailing dot are ignored."""
        for host in ["API.Example.COM", "api.example.com:8080", "api.example.com."]:
            self.assertEqual(self.routes.match(host, "GET", "/x").key, "exact", host)

    def test_wildcard_fallback(self):
        """Other hosts, and paths the exact domain lacks, fall back to C{*}."""
        self.assertEqual(self.routes.match("other.org", "GET", "/x").key, "any")
        self.assertEqual(
            self.routes.match("api.example.com", "GET", "/only-any").key, "other"
        )

    def test_missing_host(self):
        """No Host header reaches C{*} only."""
        self.assertEqual(self.routes.match(None, "GET", "/x").key, "any")
        self.assertEqual(self.routes.match("", "GET", "/x").key, "any")

    def test_no_wildcard(self):
        """Without a C{*} route an unknown host gets no route."""
        routes = table(("exact", "api.example.com", "GET", "/x"))
        self.assertIs(routes.match("other", "GET", "/x"), NO_ROUTE)

    def test_domain_normalised_on_add(self):
        """Domains given to C{add} are lower-cased."""
        routes = table(("e", "API.Example.com", "GET", "/x"))
        self.assertEqual(routes.match("api.example.com", "GET", "/x").key, "e")

    def test_normalize_host(self):
        """Host normalisation handles IPv6 literals with ports."""
        self.assertEqual(normalize_host("[::1]:8080"), "[::1]")
        self.assertEqual(normalize_host("Example.COM:80"), "example.com")
        self.assertEqual(normalize_host(None), "")

    def test_ipv6_domain(self):
        """An IPv6 literal domain matches its Host with a port."""
        routes = table(("v6", "[::1]", "GET", "/x"))
        self.assertEqual(routes.match("[::1]:9080", "GET", "/x").key, "v6")

    def test_bad_domains(self):
        """Domains with a port, spaces, a path, empty or not a string are rejected."""
        routes = RouteTable()
        for domain in ["example.com:80", "", "a b", "a/b", "*.example.com"]:
            self.assertRaises(
                ValueError, routes.add, "k", domain, "GET", parse_pattern("/"), "t"
            )
        # Not a string at all: a TypeError (the compiled table checks the type
        # on the call), or the ValueError of the pure-Python one.
        self.assertRaises(
            (ValueError, TypeError), routes.add, "k", None, "GET", parse_pattern("/"), "t"
        )
        self.assertEqual(len(routes), 0)


class MethodTests(SynchronousTestCase):
    """404 versus 405 and the allowed list."""

    def setUp(self):
        self.routes = table(
            ("get", "*", "GET", "/items/{id}"),
            ("put", "*", "PUT", "/items/{id}"),
            ("delete", "example.com", "DELETE", "/items/{id}"),
            ("post", "*", "POST", "/items"),
        )

    def test_method_not_allowed(self):
        """A path matching under other methods gives 405 with their sorted list."""
        self.assertEqual(
            self.routes.match("h", "POST", "/items/1"),
            MethodNotAllowed(["GET", "HEAD", "PUT"]),
        )

    def test_allowed_includes_exact_domain(self):
        """The allowed list covers the exact domain and C{*}."""
        self.assertEqual(
            self.routes.match("example.com", "PATCH", "/items/1"),
            MethodNotAllowed(["DELETE", "GET", "HEAD", "PUT"]),
        )

    def test_no_route(self):
        """A path matching under no method gives C{NO_ROUTE}."""
        result = self.routes.match("h", "GET", "/nothing")
        self.assertIs(result, NO_ROUTE)
        self.assertIsInstance(result, NoRoute)

    def test_head_served_by_get(self):
        """HEAD with no HEAD route is served by the GET route (RFC 9110
        §9.3.2), with its parameters."""
        found = self.routes.match("h", "HEAD", "/items/1")
        self.assertEqual((found.key, found.params), ("get", {"id": "1"}))

    def test_head_route_beats_get(self):
        """A HEAD route of its own serves HEAD; the GET route still serves GET."""
        self.routes.add("head", "*", "HEAD", parse_pattern("/items/{id}"), "t-head")
        self.assertEqual(self.routes.match("h", "HEAD", "/items/1").key, "head")
        self.assertEqual(self.routes.match("h", "GET", "/items/1").key, "get")

    def test_head_exact_domain_get_beats_wildcard_head(self):
        """The exact domain is tried before C{*}, for HEAD too: its GET route
        serves a HEAD that a C{*} HEAD route would also match."""
        self.routes.add("head", "*", "HEAD", parse_pattern("/items/{id}"), "t-head")
        self.routes.add("get-ex", "example.com", "GET", parse_pattern("/items/{id}"), "t")
        self.assertEqual(self.routes.match("example.com", "HEAD", "/items/1").key, "get-ex")

    def test_head_without_get_is_405(self):
        """HEAD on a path that only other methods serve is a 405 without HEAD."""
        self.assertEqual(self.routes.match("h", "HEAD", "/items"), MethodNotAllowed(["POST"]))

    def test_method_case_sensitive(self):
        """Request methods are compared exactly (C{get} is not C{GET})."""
        self.assertIsInstance(self.routes.match("h", "get", "/items/1"), MethodNotAllowed)

    def test_add_normalises_method(self):
        """C{add} upper-cases and validates the method."""
        routes = table(("g", "*", "get", "/x"))
        self.assertEqual(routes.match("h", "GET", "/x").key, "g")
        self.assertRaises(
            ValueError, routes.add, "k", "*", "ANY", parse_pattern("/y"), "t"
        )


class MutationTests(SynchronousTestCase):
    """Conflicts, replacement by key, and removal."""

    def test_conflict_same_shape(self):
        """A different key on the same domain, method and shape is a conflict."""
        routes = table(("a", "*", "GET", "/users/{id}"))
        error = self.assertRaises(
            RouteConflict,
            routes.add,
            "b",
            "*",
            "GET",
            parse_pattern("/users/{uid}"),
            "t-b",
        )
        self.assertEqual(error.existing_key, "a")
        self.assertIn("/users/{uid}", str(error))
        self.assertEqual(routes.match("h", "GET", "/users/1").key, "a")
        self.assertNotIn("b", routes)

    def test_no_conflict_across_method_or_domain(self):
        """The same pattern under another method or domain is fine."""
        routes = table(
            ("a", "*", "GET", "/x"),
            ("b", "*", "POST", "/x"),
            ("c", "example.com", "GET", "/x"),
        )
        self.assertEqual(len(routes), 3)

    def test_replace_same_key(self):
        """Re-adding a key swaps its target in place."""
        routes = table(("a", "*", "GET", "/users/{id}"))
        routes.add("a", "*", "GET", parse_pattern("/users/{uid}"), "new")
        self.assertEqual(
            routes.match("h", "GET", "/users/1"), Match("a", "new", {"uid": "1"})
        )
        self.assertEqual(len(routes), 1)

    def test_replace_moves_route(self):
        """Re-adding a key at another path moves it; the old path is gone."""
        routes = table(("a", "*", "GET", "/old/{x}"), ("b", "*", "GET", "/old/keep"))
        routes.add("a", "example.com", "POST", parse_pattern("/new"), "moved")
        self.assertEqual(routes.match("example.com", "POST", "/new").target, "moved")
        self.assertIs(routes.match("h", "GET", "/old/1"), NO_ROUTE)
        self.assertEqual(routes.match("h", "GET", "/old/keep").key, "b")

    def test_replace_never_misses(self):
        """During replacement the route is always present (target seen by match)."""
        routes = RouteTable()
        seen = []

        class Target:
            def __init__(self, name):
                self.name = name

        routes.add("a", "*", "GET", parse_pattern("/x"), Target("v1"))
        for version in ["v2", "v3"]:
            seen.append(routes.match("h", "GET", "/x").target.name)
            routes.add("a", "*", "GET", parse_pattern("/x"), Target(version))
            seen.append(routes.match("h", "GET", "/x").target.name)
        self.assertEqual(seen, ["v1", "v2", "v2", "v3"])

    def test_failed_replace_keeps_old(self):
        """Moving a key onto another key's route fails and leaves both intact."""
        routes = table(("a", "*", "GET", "/a"), ("b", "*", "GET", "/b"))
        self.assertRaises(
            RouteConflict, routes.add, "a", "*", "GET", parse_pattern("/b"), "x"
        )
        self.assertEqual(routes.match("h", "GET", "/a").target, "t-a")
        self.assertEqual(routes.match("h", "GET", "/b").target, "t-b")

    def test_remove(self):
        """Removing a key removes its route and reports it; unknown keys give False."""
        routes = table(("a", "*", "GET", "/a/{x}"), ("b", "*", "GET", "/a/b/c"))
        self.assertTrue(routes.remove("a"))
        self.assertIs(routes.match("h", "GET", "/a/1"), NO_ROUTE)
        self.assertEqual(routes.match("h", "GET", "/a/b/c").key, "b")
        self.assertFalse(routes.remove("a"))
        self.assertNotIn("a", routes)

    def test_remove_prunes(self):
        """Removing every route leaves an empty table that still works."""
        routes = table(("a", "d.com", "GET", "/a/{x}/y"), ("b", "*", "POST", "/"))
        routes.remove("a")
        routes.remove("b")
        self.assertEqual(routes._domains, {})
        self.assertIs(routes.match("d.com", "GET", "/a/1/y"), NO_ROUTE)

    def test_remove_then_readd(self):
        """A removed shape can be taken by another key."""
        routes = table(("a", "*", "GET", "/x"))
        routes.remove("a")
        routes.add("b", "*", "GET", parse_pattern("/x"), "t-b")
        self.assertEqual(routes.match("h", "GET", "/x").key, "b")

    def test_add_accepts_text(self):
        """A pattern may be given as text; malformed text raises PatternError."""
        routes = RouteTable()
        routes.add("a", "*", "GET", "/t/{x}", "t")
        self.assertEqual(routes.match("h", "GET", "/t/1").params, {"x": "1"})
        self.assertRaises(PatternError, routes.add, "b", "*", "GET", "/t/{", "t")


class MatchCacheTests(SynchronousTestCase):
    """Matches are remembered, and forgotten whenever the table changes."""

    def test_added_route_beats_a_remembered_match(self):
        """A literal route added after /users/me matched {id} serves it at once."""
        routes = table(("param", "*", "GET", "/users/{id}"))
        self.assertEqual(routes.match("h", "GET", "/users/me").key, "param")
        routes.add("me", "*", "GET", "/users/me", "me-target")
        found = routes.match("h", "GET", "/users/me")
        self.assertEqual((found.key, found.target, found.params), ("me", "me-target", {}))

    def test_removed_route_is_not_remembered(self):
        """A removed route's remembered match is gone with it."""
        routes = table(("a", "*", "GET", "/a"))
        self.assertEqual(routes.match("h", "GET", "/a").key, "a")
        routes.remove("a")
        self.assertIs(routes.match("h", "GET", "/a"), NO_ROUTE)

    def test_replaced_target_is_served(self):
        """Re-adding a key with a new target (a redeploy) is seen by the next match."""
        routes = table(("a", "*", "GET", "/a"))
        routes.match("h", "GET", "/a")
        routes.add("a", "*", "GET", "/a", "new")
        self.assertEqual(routes.match("h", "GET", "/a").target, "new")

    def test_remembered_params_are_fresh(self):
        """A remembered match still hands out its own params dict."""
        routes = table(("p", "*", "GET", "/u/{id}"))
        routes.match("h", "GET", "/u/1").params["id"] = "changed"
        self.assertEqual(routes.match("h", "GET", "/u/1").params, {"id": "1"})

    def test_cache_is_bounded(self):
        """However many distinct paths match, at most MATCH_CACHE are remembered."""
        routes = table(("p", "*", "GET", "/u/{id}"))
        for i in range(MATCH_CACHE + 10):
            self.assertEqual(routes.match("h", "GET", f"/u/{i}").params, {"id": str(i)})
        self.assertLessEqual(len(routes._matches), MATCH_CACHE)
        self.assertGreater(len(routes._matches), 0)

    def test_long_keys_are_not_remembered(self):
        """A long host and path is matched but not remembered (memory bound)."""
        routes = table(("p", "*", "GET", "/u/{id}"))
        long_id = "x" * MATCH_KEY_MAX
        self.assertEqual(routes.match("h", "GET", f"/u/{long_id}").params, {"id": long_id})
        self.assertEqual(routes._matches, {})
        routes.match("h", "GET", "/u/short")
        self.assertEqual(len(routes._matches), 1)


class MultiRouteTests(SynchronousTestCase):
    """One key holding several routes to one target (a multi-route endpoint)."""

    CRUD = (
        ("*", "GET", "/notes"),
        ("*", "POST", "/notes"),
        ("*", "GET", "/notes/{id}"),
        ("*", "DELETE", "/notes/{id}"),
    )

    def test_several_routes_one_key(self):
        """Every route of a placed set reaches the key's one target, with its own parameters."""
        routes = RouteTable()
        routes.place("notes", self.CRUD, "pool")
        self.assertEqual(len(routes), 1)
        for method, path, params in (
            ("GET", "/notes", {}),
            ("POST", "/notes", {}),
            ("GET", "/notes/7", {"id": "7"}),
            ("DELETE", "/notes/7", {"id": "7"}),
        ):
            found = routes.match("h", method, path)
            self.assertEqual((found.key, found.target, found.params), ("notes", "pool", params))
        self.assertEqual(routes.match("h", "PUT", "/notes/7"), MethodNotAllowed(["DELETE", "GET", "HEAD"]))

    def test_replace_is_whole(self):
        """Placing a new set replaces the old one: kept routes get the new target, dropped ones go."""
        routes = RouteTable()
        routes.place("notes", self.CRUD, "v1")
        routes.place("notes", (("*", "GET", "/notes"), ("*", "PUT", "/notes/{id}")), "v2")
        self.assertEqual(routes.match("h", "GET", "/notes").target, "v2")
        self.assertEqual(routes.match("h", "PUT", "/notes/1").target, "v2")
        self.assertIs(routes.match("h", "POST", "/notes").__class__, MethodNotAllowed)
        self.assertEqual(routes.match("h", "DELETE", "/notes/1"), MethodNotAllowed(["PUT"]))
        self.assertEqual(routes.routes("notes"), [("*", "GET", "/notes"), ("*", "PUT", "/notes/{id}")])

    def test_conflict_refuses_all(self):
        """One route of the set taken by another key refuses the whole set; the table is unchanged."""
        routes = RouteTable()
        routes.add("other", "*", "DELETE", "/notes/{note}", "t-other")
        routes.place("notes", self.CRUD[:1], "v1")
        error = self.assertRaises(RouteConflict, routes.place, "notes", self.CRUD, "v2")
        self.assertEqual(error.existing_key, "other")
        self.assertIn("DELETE /notes/{id}", str(error))
        self.assertEqual(routes.routes("notes"), [("*", "GET", "/notes")])
        self.assertEqual(routes.match("h", "GET", "/notes").target, "v1")
        self.assertEqual(routes.match("h", "POST", "/notes"), MethodNotAllowed(["GET", "HEAD"]))

    def test_same_route_twice_refused(self):
        """A set naming one (domain, method, shape) twice is refused before any change."""
        routes = RouteTable()
        error = self.assertRaises(
            RouteConflict, routes.place, "notes", (("*", "GET", "/n/{a}"), ("*", "GET", "/n/{b}")), "t"
        )
        self.assertIn("given twice", str(error))
        self.assertNotIn("notes", routes)

    def test_remove_removes_all(self):
        """Removing the key takes every one of its routes away and prunes the trie."""
        routes = RouteTable()
        routes.place("notes", self.CRUD, "pool")
        self.assertTrue(routes.remove("notes"))
        for method, path in (("GET", "/notes"), ("POST", "/notes"), ("DELETE", "/notes/1")):
            self.assertIs(routes.match("h", method, path), NO_ROUTE)
        self.assertEqual(routes._domains, {})

    def test_no_route_refused(self):
        """An empty set is a ValueError, not a key with no routes."""
        self.assertRaises(ValueError, RouteTable().place, "k", (), "t")
