"""
Tests for L{edgegw_tx.services.deadlines}: the calls in flight share one
timer, each is cancelled at its own deadline, and an answered call is
never cancelled.
"""

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.services.deadlines import Deadlines


class DeadlinesTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock)

    def test_one_timer_for_many_calls(self):
        """However many calls are in flight, one DelayedCall waits, for the oldest deadline."""
        for _ in range(100):
            self.deadlines.add(Deferred(), self.clock.seconds() + 5)
            self.clock.advance(0.01)
        [timer] = self.clock.getDelayedCalls()
        self.assertEqual(timer.getTime(), 5)

    def test_each_cancelled_at_its_deadline(self):
        """Calls are cancelled at their own deadline, not at the timer's first firing."""
        first, second = Deferred(), Deferred()
        self.deadlines.add(first, 2.0)
        self.clock.advance(1.5)
        self.deadlines.add(second, 3.5)
        self.clock.advance(0.5)
        self.failureResultOf(first, CancelledError)
        self.assertNoResult(second)
        self.clock.advance(1.4)
        self.assertNoResult(second)
        self.clock.advance(0.1)
        self.failureResultOf(second, CancelledError)
        self.assertEqual(len(self.deadlines), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answered_call_not_cancelled(self):
        """A discarded call is forgotten: its Deferred is never cancelled, the timer moves on."""
        answered, late = Deferred(), Deferred()
        token = self.deadlines.add(answered, 1.0)
        self.deadlines.add(late, 1.5)
        self.deadlines.discard(token)
        answered.callback("v")
        self.clock.advance(1.0)
        self.assertEqual(self.successResultOf(answered), "v")
        self.assertNoResult(late)
        self.clock.advance(0.5)
        self.failureResultOf(late, CancelledError)

    def test_stop(self):
        """stop() forgets every deadline and leaves no timer behind (shutdown)."""
        d = Deferred()
        self.deadlines.add(d, 1.0)
        self.deadlines.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(2)
        self.assertNoResult(d)

    def test_call_added_while_cancelling(self):
        """A call added by a cancelled call's errback gets its deadline, on the one timer."""
        late = Deferred()
        added = []

        def next_call(failure):
            d = Deferred()
            added.append(d)
            self.deadlines.add(d, self.clock.seconds() + 1)

        late.addErrback(next_call)
        self.deadlines.add(late, 1.0)
        self.clock.advance(1.0)
        [timer] = self.clock.getDelayedCalls()
        self.assertEqual(timer.getTime(), 2.0)
        self.clock.advance(1.0)
        self.failureResultOf(added[0], CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
