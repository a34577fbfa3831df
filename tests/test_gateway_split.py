"""
Tests for the split target (edgegw_tx/gateway/split.py): requests shared by
weight with a seeded random, sticky by header and cookie, counted per version,
and new weights placed as a new target over the same pools.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.gateway.split import Served, SplitTarget, cookie_value


class FakePool:
    """A pool that answers every request at once with its version."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.frames: list[dict[str, Any]] = []

    def submit(self, frame: dict[str, Any], answer: Any) -> None:
        self.frames.append(frame)
        answer({"status": 200, "body": self.version})

    def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        self.frames.append(frame)
        return succeed({"status": 200, "body": self.version})


class RequestOnlyPool:
    """A pool with ``request`` only (a data-plane proxy's face)."""

    def __init__(self, version: str) -> None:
        self.version = version

    def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return succeed({"status": 200, "body": self.version})


def frame(headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A request frame with these header fields."""
    return {"type": "request", "method": "GET", "path": "/", "headers": headers or {}}


def split(weights: list[int], sticky: str | None = None, seed: int = 7, served: Served | None = None) -> SplitTarget:
    """A split over fake pools named v0, v1, ... with a seeded random."""
    choices = [(f"v{i}", w, FakePool(f"v{i}")) for i, w in enumerate(weights)]
    return SplitTarget("ep", choices, served or Served(), sticky, random.Random(seed).random)


class SplitCase(SynchronousTestCase):
    def assertWithin(self, share: float, weight: int, message: str = "") -> None:
        """``share`` (a percentage) is within 2 points of ``weight``."""
        self.assertTrue(abs(share - weight) <= 2, f"{share}% is not within 2 points of {weight}% {message}")


class WeightTests(SplitCase):
    def test_ten_thousand_requests_follow_the_weights(self) -> None:
        """10,000 requests drawn with a seeded random land within ±2 points of each 90/10 weight, all answered."""
        target = split([90, 10])
        answers: list[Any] = []
        for _ in range(10_000):
            target.submit(frame(), answers.append)
        self.assertEqual(len(answers), 10_000)
        self.assertWithin(target.served.get("v0") / 100, 90)
        self.assertWithin(target.served.get("v1") / 100, 10)
        self.assertEqual(sum(1 for a in answers if a["body"] == "v1"), target.served.get("v1"))

    def test_four_versions_follow_the_weights(self) -> None:
        """Four versions at 40/30/20/10 each get their share of 10,000 requests within ±2 points."""
        target = split([40, 30, 20, 10], seed=3)
        for _ in range(10_000):
            target.submit(frame(), lambda _: None)
        for index, weight in enumerate([40, 30, 20, 10]):
            self.assertWithin(target.served.get(f"v{index}") / 100, weight)

    def test_a_zero_weight_is_never_chosen(self) -> None:
        """A version weighted 0 gets no request, even when drawn at the random's extremes."""
        for value in (0.0, 0.5, 0.999999):
            target = SplitTarget(
                "ep", [("a", 0, FakePool("a")), ("b", 100, FakePool("b"))], Served(), random=lambda v=value: v
            )
            target.submit(frame(), lambda _: None)
            self.assertEqual(target.served.counts, {"b": 1})

    def test_request_answers_by_the_chosen_pool(self) -> None:
        """``request`` serves by the chosen version's pool and counts it."""
        target = SplitTarget("ep", [("a", 100, FakePool("a")), ("b", 0, FakePool("b"))], Served())
        answered = self.successResultOf(target.request(frame()))
        self.assertEqual(answered["body"], "a")
        self.assertEqual(target.served.counts, {"a": 1})

    def test_a_pool_without_submit_is_asked_by_request(self) -> None:
        """``submit`` on a pool that has only ``request`` answers with what its Deferred fires."""
        target = SplitTarget("ep", [("a", 100, RequestOnlyPool("a"))], Served())
        answers: list[Any] = []
        target.submit(frame(), answers.append)
        self.assertEqual(answers, [{"status": 200, "body": "a"}])

    def test_a_pool_that_raises_answers_a_failure(self) -> None:
        """A pool whose ``request`` raises gives ``answer`` a Failure, never an exception to the dispatcher."""

        class Broken:
            def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
                raise RuntimeError("gone")

        target = SplitTarget("ep", [("a", 100, Broken())], Served())
        answers: list[Any] = []
        target.submit(frame(), answers.append)
        self.assertIsInstance(answers[0], Failure)

    def test_refuses_weights_that_serve_nothing(self) -> None:
        """No version, a negative weight or all weights 0 are refused when the target is built."""
        self.assertRaises(ValueError, SplitTarget, "ep", [], Served())
        self.assertRaises(ValueError, SplitTarget, "ep", [("a", -1, FakePool("a")), ("b", 101, FakePool("b"))], Served())
        self.assertRaises(ValueError, SplitTarget, "ep", [("a", 0, FakePool("a"))], Served())


class StickyTests(SplitCase):
    def test_one_header_value_stays_on_one_version(self) -> None:
        """With ``header:X-User`` every request of one client goes to one version, whatever the random says."""
        target = split([50, 50], sticky="header:X-User")
        for user in range(200):
            for _ in range(5):
                target.submit(frame({"x-user": f"user-{user}"}), lambda _: None)
            pools = [p for p in target.pools() if any(f["headers"].get("x-user") == f"user-{user}" for f in p.frames)]
            self.assertEqual(len(pools), 1, f"user-{user} was served by {len(pools)} versions")

    def test_sticky_clients_share_by_weight(self) -> None:
        """10,000 distinct sticky clients land on the versions by 90/10 within ±2 points."""
        target = split([90, 10], sticky="header:X-User")
        for user in range(10_000):
            target.submit(frame({"x-user": f"client-{user}"}), lambda _: None)
        self.assertWithin(target.served.get("v1") / 100, 10)

    def test_one_cookie_value_stays_on_one_version(self) -> None:
        """With ``cookie:session`` the session cookie picks the version, other cookies around it or not."""
        target = split([50, 50], sticky="cookie:session")
        first = target.pick({"cookie": "session=abc123"})
        for cookie in ("theme=dark; session=abc123", "session=abc123; lang=fr", 'session="abc123"'):
            self.assertEqual(target.pick({"cookie": cookie}), first, cookie)

    def test_the_same_value_picks_the_same_version_in_any_target(self) -> None:
        """The sticky hash is stable: two targets (two processes, or after a restart) agree for every value."""
        one = split([30, 70], sticky="header:X-User", seed=1)
        two = split([30, 70], sticky="header:X-User", seed=2)
        for user in range(500):
            headers = {"x-user": str(user)}
            self.assertEqual(one.pick(headers), two.pick(headers))

    def test_without_the_header_the_request_is_drawn(self) -> None:
        """A client without the sticky header (or cookie) is drawn by weight: both versions get some."""
        for sticky, headers in (("header:X-User", {}), ("cookie:session", {"cookie": "other=1"})):
            target = split([50, 50], sticky=sticky)
            for _ in range(200):
                target.submit(frame(headers), lambda _: None)
            self.assertGreater(target.served.get("v0"), 50, sticky)
            self.assertGreater(target.served.get("v1"), 50, sticky)

    def test_cookie_value_reads_one_cookie(self) -> None:
        """``cookie_value`` finds a cookie among others, the first of a repeated name, and None when absent."""
        self.assertEqual(cookie_value("a=1; b=2", "b"), "2")
        self.assertEqual(cookie_value("b=1;b=2", "b"), "1")
        self.assertIsNone(cookie_value("ab=1", "b"))
        self.assertIsNone(cookie_value("b", "b"))
        self.assertIsNone(cookie_value(None, "b"))

    def test_refuses_an_unknown_sticky_kind(self) -> None:
        """A sticky that is neither a header nor a cookie is refused when the target is built."""
        self.assertRaises(ValueError, split, [100], sticky="query:user")


class WeightChangeTests(SplitCase):
    def test_a_new_target_over_the_same_pools_goes_on_counting(self) -> None:
        """New weights are a new target over the same pools and the same ``Served``: counts go on, no pool changes."""
        served = Served()
        a, b = FakePool("a"), FakePool("b")
        old = SplitTarget("ep", [("a", 90, a), ("b", 10, b)], served, random=random.Random(5).random)
        for _ in range(1000):
            old.submit(frame(), lambda _: None)
        before = dict(served.counts)
        new = SplitTarget("ep", [("a", 10, a), ("b", 90, b)], served, random=random.Random(5).random)
        for _ in range(1000):
            new.submit(frame(), lambda _: None)
        self.assertEqual(served.get("a") + served.get("b"), 2000)
        self.assertGreater(served.get("b") - before["b"], 800)
        self.assertEqual(new.pools(), [a, b])
        self.assertEqual(new.choices(), [("a", 10), ("b", 90)])

    def test_a_request_in_flight_on_the_old_target_is_answered(self) -> None:
        """A request handed out by the old target is answered after a new one took the route."""
        pending: list[Any] = []

        class Slow:
            def submit(self, frame: dict[str, Any], answer: Any) -> None:
                pending.append(answer)

        served = Served()
        pool = Slow()
        old = SplitTarget("ep", [("a", 100, pool)], served)
        answers: list[Any] = []
        old.submit(frame(), answers.append)
        SplitTarget("ep", [("a", 100, pool)], served).submit(frame(), answers.append)
        for answer in pending:
            answer({"status": 200})
        self.assertEqual(len(answers), 2)

    def test_keep_only_forgets_versions_gone(self) -> None:
        """``Served.keep_only`` drops the counts of versions that left the split and keeps the others."""
        served = Served()
        served.counts.update({"a": 3, "b": 4})
        served.keep_only(["b", "c"])
        self.assertEqual(served.counts, {"b": 4})
