"""Tests for ``edgegw_tx.observability.trace``: W3C ``traceparent`` in and out."""

import re

from twisted.trial import unittest

from edgegw_tx.observability.trace import (
    TraceContext,
    parse_traceparent,
    trace_id_of,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01".encode()
OUTGOING = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

INVALID = {
    "version ff": f"ff-{TRACE}-{PARENT}-01",
    "all-zero trace id": f"00-{'0' * 32}-{PARENT}-01",
    "all-zero parent id": f"00-{TRACE}-{'0' * 16}-01",
    "short trace id": f"00-{TRACE[:-1]}-{PARENT}-01",
    "long trace id": f"00-{TRACE}a-{PARENT}-01",
    "short parent id": f"00-{TRACE}-{PARENT[:-1]}-01",
    "long parent id": f"00-{TRACE}-{PARENT}0-01",
    "one-digit flags": f"00-{TRACE}-{PARENT}-1",
    "one-digit version": f"0-{TRACE}-{PARENT}-01",
    "upper-case trace id": f"00-{TRACE.upper()}-{PARENT}-01",
    "upper-case parent id": f"00-{TRACE}-{PARENT.upper()}-01",
    "upper-case version": f"0A-{TRACE}-{PARENT}-01",
    "upper-case flags": f"00-{TRACE}-{PARENT}-0A",
    "non-hex trace id": f"00-{TRACE[:-1]}g-{PARENT}-01",
    "extra field on version 00": f"00-{TRACE}-{PARENT}-01-extra",
    "two headers joined": f"00-{TRACE}-{PARENT}-01, 00-{TRACE}-{PARENT}-01",
    "leading space": f" 00-{TRACE}-{PARENT}-01",
    "underscores": f"00_{TRACE}_{PARENT}_01",
    "garbage": "<script>alert(1)</script>",
    "empty": "",
    "newline": f"00-{TRACE}-{PARENT}-01\n",
    "non-ascii": f"00-{TRACE}-{PARENT}-0\u00e9",
}


class ParseTests(unittest.TestCase):
    def test_valid(self):
        """A valid version-00 header gives its trace id and flags."""
        self.assertEqual(parse_traceparent(VALID), (TRACE, "01"))
        self.assertEqual(parse_traceparent(VALID[:-2] + b"00"), (TRACE, "00"))

    def test_future_version(self):
        """A version above 00 parses by the 00 layout, with or without more fields after a dash."""
        self.assertEqual(parse_traceparent(b"cc" + VALID[2:]), (TRACE, "01"))
        self.assertEqual(parse_traceparent(b"cc" + VALID[2:] + b"-what-ever"), (TRACE, "01"))
        self.assertIsNone(parse_traceparent(b"cc" + VALID[2:] + b"x"))

    def test_invalid(self):
        """Every kind of invalid value parses to None."""
        for why, value in INVALID.items():
            with self.subTest(why):
                self.assertIsNone(parse_traceparent(value.encode("utf-8")), why)

    def test_trace_id_of(self):
        """``trace_id_of`` reads str or bytes and gives None for missing or invalid values."""
        self.assertEqual(trace_id_of(VALID.decode()), TRACE)
        self.assertEqual(trace_id_of(VALID), TRACE)
        self.assertIsNone(trace_id_of(None))
        self.assertIsNone(trace_id_of(""))
        self.assertIsNone(trace_id_of("garbage"))
        self.assertIsNone(trace_id_of(INVALID["non-ascii"]))


class TraceContextTests(unittest.TestCase):
    def setUp(self):
        self.trace = TraceContext()

    def test_valid_incoming_keeps_trace_id_and_flags(self):
        """A valid traceparent keeps its trace id and flags and gets a new parent id (the gateway's span)."""
        trace_id, outgoing = self.trace.for_request(VALID)
        self.assertEqual(trace_id, TRACE)
        match = OUTGOING.fullmatch(outgoing)
        self.assertIsNotNone(match)
        self.assertEqual(match.group(1), TRACE)
        self.assertNotEqual(match.group(2), PARENT)
        self.assertEqual(match.group(3), "01")

    def test_future_version_answered_as_00(self):
        """An incoming higher version keeps its trace id, and the gateway sends version 00."""
        trace_id, outgoing = self.trace.for_request(b"cc" + VALID[2:] + b"-more")
        self.assertEqual(trace_id, TRACE)
        self.assertTrue(outgoing.startswith(f"00-{TRACE}-"))
        self.assertNotIn("more", outgoing)

    def test_missing_starts_a_trace(self):
        """No traceparent starts a new trace, sampled, in the version-00 layout."""
        for missing in (None, b""):
            trace_id, outgoing = self.trace.for_request(missing)
            match = OUTGOING.fullmatch(outgoing)
            self.assertIsNotNone(match)
            self.assertEqual(match.group(1), trace_id)
            self.assertEqual(match.group(3), "01")

    def test_invalid_is_replaced_never_echoed(self):
        """An invalid traceparent gives a new trace; no part of the input comes back."""
        for why, value in INVALID.items():
            with self.subTest(why):
                trace_id, outgoing = self.trace.for_request(value.encode("utf-8"))
                match = OUTGOING.fullmatch(outgoing)
                self.assertIsNotNone(match, why)
                self.assertEqual(match.group(1), trace_id)
                self.assertNotIn(TRACE, outgoing, why)
                self.assertNotIn(PARENT, outgoing, why)
                self.assertNotEqual(trace_id, "0" * 32)

    def test_ids_differ(self):
        """New trace and span ids do not repeat over many requests, across buffer refills."""
        trace = TraceContext(batch=64)
        ids = [trace.for_request(None) for _ in range(2000)]
        self.assertEqual(len({t for t, _ in ids}), 2000)
        self.assertEqual(len({p for _, p in ids}), 2000)

    def test_all_zero_draws_are_skipped(self):
        """An all-zero draw from the random source is never used as an id."""
        draws = iter([bytes(16), bytes(16), bytes(range(1, 17)), bytes(16), bytes(range(1, 17))])
        trace = TraceContext(random_bytes=lambda n: next(draws), batch=16)
        self.assertEqual(trace.new_trace_id(), bytes(range(1, 17)).hex())
        self.assertEqual(trace.new_span_id(), bytes(range(1, 9)).hex())

    def test_all_zero_draws_are_skipped_per_request(self):
        """``for_request`` never sends an all-zero trace or span id, on either path."""
        good = bytes(range(1, 25))
        draws = iter([bytes(24), good, bytes(24), good])
        trace = TraceContext(random_bytes=lambda n: next(draws), batch=24)
        trace_id, outgoing = trace.for_request(None)
        self.assertEqual(trace_id, good[:16].hex())
        self.assertEqual(outgoing, f"00-{good[:16].hex()}-{good[16:24].hex()}-01")
        trace_id, outgoing = trace.for_request(VALID)
        self.assertEqual(outgoing, f"00-{TRACE}-{good[:8].hex()}-01")

    def test_deterministic_source(self):
        """Ids are consecutive slices of the hex of the random source's bytes."""
        source = bytes(range(1, 65))
        trace = TraceContext(random_bytes=lambda n: source[:n], batch=48)
        self.assertEqual(trace.new_trace_id(), source[:16].hex())
        self.assertEqual(trace.new_span_id(), source[16:24].hex())
        self.assertEqual(trace.new_trace_id(), source[24:40].hex())
        # 16 hex digits left in the buffer: a span id fits, a trace id refills.
        self.assertEqual(trace.new_span_id(), source[40:48].hex())
        self.assertEqual(trace.new_trace_id(), source[:16].hex())

    def test_batch_too_small(self):
        """A refill too small for one trace id is refused."""
        self.assertRaises(ValueError, TraceContext, batch=8)
