"""Tests for L{edgegw_tx.paths}."""

from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.paths import (
    METHODS,
    Literal,
    Param,
    PathPattern,
    PatternError,
    parse_pattern,
    validate_method,
)


class ParsePatternGoodTests(SynchronousTestCase):
    """Well-formed patterns parse into literal and parameter segments."""

    def test_root(self):
        """The root C{/} alone is valid and has no segments."""
        pattern = parse_pattern("/")
        self.assertEqual(pattern.text, "/")
        self.assertEqual(pattern.segments, ())
        self.assertEqual(pattern.shape, "/")

    def test_literals_and_params(self):
        """Literal segments and whole-segment C{{name}} parameters, in order."""
        pattern = parse_pattern("/users/{id}/posts/{post_id}")
        self.assertEqual(pattern.text, "/users/{id}/posts/{post_id}")
        self.assertEqual(
            pattern.segments,
            (Literal("users"), Param("id"), Literal("posts"), Param("post_id")),
        )
        self.assertEqual(pattern.param_names, ("id", "post_id"))

    def test_rfc3986_path_characters(self):
        """Every RFC 3986 path character is allowed in a literal."""
        text = "/a-z.A_Z~0!$&'()*+,;=:@"
        self.assertEqual(parse_pattern(text).segments, (Literal(text[1:]),))

    def test_percent_escapes_decoded(self):
        """A literal's text is percent-decoded: that is what requests are compared with."""
        self.assertEqual(
            parse_pattern("/caf%C3%A9/a%2Fb").segments,
            (Literal("café"), Literal("a/b")),
        )

    def test_non_ascii_literal(self):
        """Printable non-ASCII characters are allowed and equal their escaped form."""
        self.assertEqual(
            parse_pattern("/café").shape, parse_pattern("/caf%C3%A9").shape
        )

    def test_param_names(self):
        """Parameter names are ASCII identifiers, underscores and digits allowed."""
        pattern = parse_pattern("/{_a1}/{B}")
        self.assertEqual(pattern.segments, (Param("_a1"), Param("B")))

    def test_equal_and_hashable(self):
        """Patterns parsed from the same text are equal and hash alike."""
        self.assertEqual(parse_pattern("/a/{b}"), parse_pattern("/a/{b}"))
        self.assertEqual(
            {parse_pattern("/a/{b}"), parse_pattern("/a/{b}")}, {parse_pattern("/a/{b}")}
        )
        self.assertNotEqual(parse_pattern("/a/{b}"), parse_pattern("/a/{c}"))

    def test_shape_ignores_param_names(self):
        """Patterns differing only in parameter names share a shape (they conflict)."""
        self.assertEqual(
            parse_pattern("/users/{id}").shape, parse_pattern("/users/{uid}").shape
        )
        self.assertEqual(parse_pattern("/users/{id}").shape, "/users/{}")

    def test_shape_distinguishes_literals(self):
        """Different literals, and a param versus a literal, give different shapes."""
        shapes = {
            parse_pattern(t).shape
            for t in ["/a/b", "/a/{x}", "/a%2Fb", "/a/%7B%7D", "/a/c", "/a"]
        }
        self.assertEqual(len(shapes), 6)

    def test_str(self):
        """C{str()} of a pattern is its text."""
        self.assertEqual(str(parse_pattern("/x/{y}")), "/x/{y}")

    def test_is_value_error(self):
        """L{PatternError} is a L{ValueError}, so generic validation catches it."""
        self.assertTrue(issubclass(PatternError, ValueError))

    def test_pattern_type(self):
        """L{parse_pattern} returns a L{PathPattern}."""
        self.assertIsInstance(parse_pattern("/x"), PathPattern)


class ParsePatternBadTests(SynchronousTestCase):
    """Each malformed pattern raises L{PatternError} naming the problem."""

    def assertRejects(self, text, *fragments):
        error = self.assertRaises(PatternError, parse_pattern, text)
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return error

    def test_empty(self):
        """An empty pattern is rejected as empty."""
        self.assertRejects("", "empty")

    def test_not_string(self):
        """A non-string is rejected with its type named."""
        self.assertRejects(None, "must be a string", "NoneType")

    def test_no_leading_slash(self):
        """A pattern must start with C{/}."""
        self.assertRejects("users/{id}", "must start with '/'")

    def test_double_slash(self):
        """An empty segment (C{//}) is rejected."""
        self.assertRejects("//x", "empty segment")
        self.assertRejects("/a//b", "empty segment")

    def test_trailing_slash(self):
        """A trailing C{/} is rejected for everything but the root."""
        self.assertRejects("/hello/", "ends with '/'")
        self.assertRejects("//", "ends with '/'")

    def test_unclosed_brace(self):
        """C{/users/{} has a C{{} without a C{}}."""
        self.assertRejects("/users/{", "unbalanced brace", "without a closing")

    def test_unopened_brace(self):
        """C{/a}} has a C{}} without a C{{}."""
        self.assertRejects("/a}", "unbalanced brace", "without an opening")

    def test_brace_split_by_slash(self):
        """Braces around a C{/} leave each segment unbalanced."""
        self.assertRejects("/{a/b}", "unbalanced brace")

    def test_reversed_braces(self):
        """C{}} before C{{} is unbalanced."""
        self.assertRejects("/}a{", "unbalanced brace")

    def test_nested_braces(self):
        """Nested braces are rejected."""
        self.assertRejects("/{{a}}", "more than one pair")

    def test_partial_segment_param(self):
        """A parameter sharing its segment with text is rejected (for now)."""
        self.assertRejects("/a{b}", "whole segment", "'a{b}'")
        self.assertRejects("/{b}.json", "whole segment")

    def test_empty_param(self):
        """C{{}} has no parameter name."""
        self.assertRejects("/users/{}", "empty parameter name")

    def test_invalid_param_name(self):
        """A parameter name must be an identifier."""
        self.assertRejects("/{1a}", "invalid parameter name '1a'")
        self.assertRejects("/{a-b}", "invalid parameter name 'a-b'")
        self.assertRejects("/{a b}", "invalid parameter name 'a b'")

    def test_duplicate_param(self):
        """The same parameter name twice is rejected."""
        self.assertRejects("/{id}/x/{id}", "duplicate parameter name 'id'")

    def test_space(self):
        """A space is not allowed in a path."""
        self.assertRejects("/a b", "a space", "not allowed")

    def test_question_mark(self):
        """C{?} starts a query; not allowed in a pattern."""
        self.assertRejects("/a?b=1", "'?'", "not allowed")

    def test_hash(self):
        """C{#} starts a fragment; not allowed in a pattern."""
        self.assertRejects("/a#b", "'#'", "not allowed")

    def test_control_characters(self):
        """Control characters (ASCII and C1) are rejected and named by code point."""
        self.assertRejects("/a\x00", "control character U+0000")
        self.assertRejects("/a\tb", "control character U+0009")
        self.assertRejects("/a\x7f", "control character U+007F")
        self.assertRejects("/a\x85", "control character U+0085")

    def test_unprintable_unicode(self):
        """Unprintable non-ASCII (a no-break space) is rejected."""
        self.assertRejects("/a\u00a0", "unprintable character U+00A0")

    def test_other_ascii(self):
        """ASCII characters outside RFC 3986 paths are rejected."""
        for char in '"<>\\^`|[]':
            self.assertRejects("/a" + char, "not allowed")

    def test_bad_percent(self):
        """A C{%} must start a two-hex-digit escape."""
        self.assertRejects("/100%", "'%' not followed by two hex digits")
        self.assertRejects("/%zz", "'%' not followed by two hex digits")

    def test_percent_not_utf8(self):
        """Escapes must decode as UTF-8."""
        self.assertRejects("/%FF", "not UTF-8")


class ValidateMethodTests(SynchronousTestCase):
    """L{validate_method} normalises the methods the gateway routes."""

    def test_known(self):
        """Each supported method is accepted in any case and upper-cased."""
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]:
            self.assertEqual(validate_method(method), method)
            self.assertEqual(validate_method(method.lower()), method)
        self.assertEqual(len(METHODS), 7)

    def test_unknown(self):
        """Other methods (including C{ANY}) raise a ValueError naming them."""
        for method in ["ANY", "TRACE", "CONNECT", "", "G ET"]:
            error = self.assertRaises(ValueError, validate_method, method)
            self.assertIn(repr(method), str(error))
            self.assertIn("GET", str(error))

    def test_not_string(self):
        """A non-string method raises ValueError."""
        self.assertRaises(ValueError, validate_method, None)
