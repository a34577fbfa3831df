"""
The suite's own rule (tests/README.md): a test class that runs real parts (a
gateway, a browser, PostgreSQL, Redis) is an integration test and says so in
its name.
"""

import importlib
import inspect
import pkgutil

from twisted.trial import unittest

import tests
from tests.support.hardening import HardeningTestCase
from tests.support.harness import GatewayTestCase

# The bases of tests on a real gateway (real cargo, real workers); subclasses are integration tests.
REAL_GATEWAY_BASES = (GatewayTestCase, HardeningTestCase)
# The same, defined in the test module that uses them: a browser, PostgreSQL, Redis.
REAL_PART_BASES = (
    ("test_admin_ui", "AdminUITestCase"),
    ("test_services_postgres", "PostgresTestCase"),
    ("test_services_redis", "RedisTestCase"),
)


def real_bases():
    """Every base class of tests on real parts."""
    found = [getattr(importlib.import_module("tests." + module), name) for module, name in REAL_PART_BASES]
    return REAL_GATEWAY_BASES + tuple(found)


def test_classes():
    """Every TestCase subclass defined in a tests/test_*.py module, with its module's name."""
    for info in pkgutil.iter_modules(tests.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module("tests." + info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module.__name__:
                yield info.name, name, value


class LayoutTests(unittest.SynchronousTestCase):
    """Unit and integration tests are told apart by name."""

    def test_real_part_tests_are_named_integration(self):
        """Every test class on a real gateway, browser, PostgreSQL or Redis base is named ``...IntegrationTests``."""
        bases = real_bases()
        misnamed = [
            f"{module}.{name}"
            for module, name, cls in test_classes()
            if issubclass(cls, bases) and cls not in bases and not name.endswith("IntegrationTests")
        ]
        self.assertEqual(misnamed, [])
