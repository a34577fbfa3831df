"""Tests for L{edgegw_tx.gateway.target}: the normal form of request paths."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.gateway.target import UNRESERVED, BadPath, normal_path, valid_host

# Paths built of the pieces that matter: unreserved and reserved characters,
# escapes of any byte in either case, dots, slashes and a non-ASCII letter.
_PIECES = st.sampled_from(["a", "Z", "0", "-", "_", "~", ".", "..", "/", ":", "@", "!", "é"]) | st.integers(
    1, 255
).map(lambda b: "%%%02x" % b) | st.integers(1, 255).map(lambda b: "%%%02X" % b)
_PATHS = st.lists(_PIECES, max_size=12).map(lambda pieces: "/" + "".join(pieces))


def _normal_or_none(path: str) -> str | None:
    """The normal form of C{path}, or None where it has none (refused)."""
    try:
        return normal_path(path)
    except BadPath:
        return None


class NormalPathTests(SynchronousTestCase):
    """The rules of the module docstring, one by one."""

    def test_common_path_unchanged(self):
        """A path without escapes, dot-segments or non-ASCII is returned as it is."""
        for path in ["/", "/hello", "/users/42/posts", "/a.json", "/.well-known/x", "*"]:
            self.assertIs(normal_path(path), path)

    def test_unreserved_escapes_decoded(self):
        """Escapes of letters, digits and C{-._~} are decoded, in either case."""
        self.assertEqual(normal_path("/%73ecret%2d%5F%7e%2E%41%30"), "/secret-_~.A0")

    def test_other_escapes_kept_upper_case(self):
        """Reserved and non-ASCII escapes stay escapes, hex in upper case."""
        self.assertEqual(normal_path("/a%2fb%3a%c3%a9%25%20"), "/a%2Fb%3A%C3%A9%25%20")

    def test_non_ascii_encoded(self):
        """A raw non-ASCII character becomes its UTF-8 escapes."""
        self.assertEqual(normal_path("/café"), "/caf%C3%A9")

    def test_refused(self):
        """%00, malformed escapes and dot-segments raise L{BadPath} naming them."""
        for path, fragment in [
            ("/a%00", "%00"),
            ("/a%0", "'%0'"),
            ("/a%g1", "'%g1'"),
            ("/..", "'..'"),
            ("/a/./b", "'.'"),
            ("/a/%2e%2e/b", "'..'"),
            ("/a/.%2e", "'..'"),
        ]:
            error = self.assertRaises(BadPath, normal_path, path)
            self.assertIn(fragment, str(error))

    @given(_PATHS)
    def test_idempotent(self, path):
        """The normal form of a normal form is itself (so routing it again, or
        a proxy normalising it, changes nothing)."""
        normal = _normal_or_none(path)
        if normal is not None:
            self.assertEqual(normal_path(normal), normal)

    @given(_PATHS)
    def test_no_unreserved_escape_left(self, path):
        """No escape of an unreserved character, no lower-case hex and no
        non-ASCII character is left in a normal form."""
        normal = _normal_or_none(path)
        if normal is not None:
            self.assertTrue(normal.isascii())
            for i in range(len(normal)):
                if normal[i] == "%":
                    digits = normal[i + 1 : i + 3]
                    self.assertEqual(digits, digits.upper())
                    self.assertNotIn(chr(int(digits, 16)), UNRESERVED)


class ValidHostTests(SynchronousTestCase):
    """C{Host} values: C{host [":" port]} of RFC 3986, nothing else."""

    def test_valid(self):
        """Names, addresses, IP literals, ports, escapes and the empty value pass."""
        for value in (b"a.example", b"A.example:8080", b"127.0.0.1:9080", b"[::1]:80", b"[::1]", b"", b"%41.example"):
            self.assertTrue(valid_host(value), value)

    def test_invalid(self):
        """Userinfo, lists, paths, spaces, unclosed brackets and two colons fail."""
        for value in (b"a.example:80@b.example", b"a.example, b.example", b"a/b", b"a b", b"[::1", b"a:b:c", b"caf\xc3\xa9"):
            self.assertFalse(valid_host(value), value)
