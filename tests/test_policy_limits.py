"""
The ``limits`` part of a policy (edgegw_tx/policy/limits.py): its schema's
400s by field, the 413 of a body over ``max_body``, and the ``timeout`` the
dispatcher reads.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.policy import limits, model
from edgegw_tx.policy.part import PolicyContext, PolicyRequest


def request(body_length: int) -> PolicyRequest:
    """A POST with a body of ``body_length`` bytes."""
    return PolicyRequest("POST", "/upload", {}, "192.0.2.1", body_length)


class LimitsSchemaTests(unittest.TestCase):
    """What ``validate`` accepts and refuses in ``policy.limits``."""

    def refused(self, config: object) -> model.PolicyError:
        """The error validating ``{"limits": config}`` on an endpoint raises."""
        return self.assertRaises(model.PolicyError, model.validate, {"limits": config}, "endpoint")

    def test_accepts_both_and_either(self) -> None:
        """A timeout, a body size, both, or neither (the gateway's own limits) are accepted as given."""
        for config in ({"timeout": 2.5, "max_body": 1024}, {"timeout": 1}, {"max_body": 0}, {}):
            self.assertEqual(model.validate({"limits": config}, "endpoint"), {"limits": config})

    def test_timeout_range(self) -> None:
        """``timeout`` 0, negative, above MAX_TIMEOUT or not a number is refused naming policy.limits.timeout."""
        for value in (0, -1, limits.MAX_TIMEOUT + 1, "5", True):
            error = self.refused({"timeout": value})
            self.assertEqual(error.field, "policy.limits.timeout")
            self.assertIn("policy.limits.timeout", error.message)
        self.assertIn(f"at most {limits.MAX_TIMEOUT:g}", self.refused({"timeout": 0}).message)

    def test_max_body_range(self) -> None:
        """``max_body`` below 0, above MAX_BODY or with a fraction is refused naming policy.limits.max_body."""
        for value in (-1, limits.MAX_BODY + 1, 1.5, "10"):
            error = self.refused({"max_body": value})
            self.assertEqual(error.field, "policy.limits.max_body")
            self.assertIn("policy.limits.max_body", error.message)

    def test_unknown_field(self) -> None:
        """A field the part does not have is refused by its full path."""
        error = self.refused({"timeout": 1, "max_bdy": 5})
        self.assertEqual(error.field, "policy.limits.max_bdy")
        self.assertIn("unknown field", error.message)


class LimitsCheckTests(unittest.TestCase):
    """The compiled part."""

    context = PolicyContext(seconds=Clock().seconds)

    def test_body_over_max_body_is_413(self) -> None:
        """A body one byte over ``max_body`` gets a 413 whose JSON body names the limit."""
        check = limits.build({"max_body": 100}, self.context)
        extra: list[tuple[str, str]] = []
        verdict = check.check(request(101), extra)
        assert verdict is not None
        status, headers, body = verdict
        self.assertEqual(status, 413)
        self.assertIn(("content-type", "application/json"), headers)
        self.assertIn("larger than 100 bytes", json.loads(body)["error"])
        self.assertEqual(extra, [])

    def test_body_at_max_body_goes_on(self) -> None:
        """A body of exactly ``max_body`` bytes (and an empty one) goes on to the worker."""
        check = limits.build({"max_body": 100}, self.context)
        self.assertIsNone(check.check(request(100), []))
        self.assertIsNone(check.check(request(0), []))

    def test_zero_max_body_refuses_any_body(self) -> None:
        """``max_body: 0`` lets only requests without a body through."""
        check = limits.build({"max_body": 0}, self.context)
        self.assertIsNone(check.check(request(0), []))
        self.assertEqual(check.check(request(1), [])[0], 413)  # type: ignore[index]

    def test_no_max_body_never_answers(self) -> None:
        """Without ``max_body`` the check lets any body through (the gateway's --max-body still applies)."""
        check = limits.build({"timeout": 3}, self.context)
        self.assertIsNone(check.check(request(10**9), []))

    def test_timeout_exposed(self) -> None:
        """The built check and the compiled policy carry ``timeout`` as seconds, None when not set."""
        self.assertEqual(limits.build({"timeout": 3}, self.context).timeout, 3.0)
        self.assertIsNone(limits.build({"max_body": 3}, self.context).timeout)
        compiled = model.compile(model.effective({"limits": {"timeout": 7}}, None, None), self.context)
        assert compiled is not None
        self.assertEqual(compiled.timeout, 7.0)
