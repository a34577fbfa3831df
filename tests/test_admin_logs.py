"""Tests for L{edgegw_tx.admin.logs}: the per-endpoint rings and their caps."""

from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.admin.logs import LogBook


class LogBookTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)

    def texts(self, book, endpoint_id="e"):
        return [entry["line"] for entry in book.lines(endpoint_id)]

    def test_lines_in_order_with_time_and_stream(self):
        """Lines come back oldest first, with their clock time and stream."""
        book = LogBook(self.clock)
        log = book.writer("e")
        log("stderr", "one")
        self.clock.advance(1)
        log("gateway", "two")
        entries = book.lines("e")
        self.assertEqual(
            [(e["time"], e["stream"], e["line"]) for e in entries],
            [(1000, "stderr", "one"), (1001, "gateway", "two")],
        )
        self.assertEqual(entries[0]["timestamp"], "1970-01-01T00:16:40+00:00")
        self.assertEqual(self.texts(book, "other"), [])

    def test_since(self):
        """since keeps only the lines strictly newer."""
        book = LogBook(self.clock)
        log = book.writer("e")
        log("stderr", "old")
        self.clock.advance(1)
        log("stderr", "new")
        self.assertEqual([e["line"] for e in book.lines("e", since=1000)], ["new"])

    def test_line_count_cap_drops_the_oldest(self):
        """Past max_lines the oldest lines go."""
        book = LogBook(self.clock, max_lines=3)
        log = book.writer("e")
        for n in range(5):
            log("stderr", str(n))
        self.assertEqual(self.texts(book), ["2", "3", "4"])

    def test_character_cap_drops_the_oldest(self):
        """Past max_chars in total the oldest lines go, however few lines there are."""
        book = LogBook(self.clock, max_chars=25, max_line=10)
        log = book.writer("e")
        for n in range(6):
            log("stderr", str(n) * 10)
        self.assertEqual(self.texts(book), ["4" * 10, "5" * 10])
        log("stderr", "x")
        self.assertEqual(self.texts(book), ["4" * 10, "5" * 10, "x"])

    def test_long_line_is_cut(self):
        """A line over max_line is cut there, with a note of how much was cut."""
        book = LogBook(self.clock, max_chars=100, max_line=10)
        book.writer("e")("gateway", "a" * 25)
        self.assertEqual(self.texts(book), ["a" * 10 + " [... 15 more characters]"])

    def test_burst_keeps_memory_bounded(self):
        """10 MB of lines leave at most max_chars characters, ending with the newest line."""
        book = LogBook(self.clock)
        log = book.writer("e")
        line = "x" * 99
        for _ in range(100_000):
            log("stderr", line)
        log("stderr", "last")
        texts = self.texts(book)
        self.assertLessEqual(sum(map(len, texts)), 1024 * 1024)
        self.assertEqual(texts[-1], "last")

    def test_writers_share_a_ring_and_forget(self):
        """Two writers of one endpoint share its ring; forget drops it."""
        book = LogBook(self.clock, max_lines=2)
        first, second = book.writer("e"), book.writer("e")
        first("stderr", "a")
        second("stderr", "b")
        first("stderr", "c")
        self.assertEqual(self.texts(book), ["b", "c"])
        book.forget("e")
        self.assertEqual(self.texts(book), [])

    def test_bad_caps(self):
        """A cap that cannot hold one line is refused."""
        self.assertRaises(ValueError, LogBook, self.clock, max_lines=0)
        self.assertRaises(ValueError, LogBook, self.clock, max_chars=10, max_line=11)
