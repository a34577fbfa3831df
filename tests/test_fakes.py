"""
The shared fakes (tests/support/) against the real classes and interfaces
they stand in for: a fake whose method the real one does not have, or takes
other parameters, would let a test pass that production fails.
"""

import inspect

from twisted.internet.interfaces import IReactorProcess
from twisted.trial import unittest

from edgegw_tx.build.builder import Builder
from edgegw_tx.services.registry import ServiceRegistry
from edgegw_tx.workers.pool import WorkerPool
from tests.support import fakes, processes
from tests.support.builds import ProcessReactor
from tests.support.workers import FakeProcessReactor


def parameters(function):
    """The parameter names of ``function`` after ``self``, with * and ** marked."""
    names = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            names.append("*" + parameter.name)
        elif parameter.kind is parameter.VAR_KEYWORD:
            names.append("**" + parameter.name)
        else:
            names.append(parameter.name)
    return names[1:] if names[:1] == ["self"] else names


def drift(real, fake):
    """What in ``fake``'s public methods ``real`` lacks or takes otherwise: one line each."""
    problems = []
    for name, member in inspect.getmembers(fake, inspect.isfunction):
        if name.startswith("_"):
            continue
        mine = getattr(real, name, None)
        if mine is None or not callable(mine):
            problems.append(f"{fake.__name__}.{name}: {real.__name__} has no such method")
        elif parameters(member) != parameters(mine):
            problems.append(f"{fake.__name__}.{name}{parameters(member)} != {real.__name__}{parameters(mine)}")
    return problems


class FakeSignatureTests(unittest.SynchronousTestCase):
    """Each fake's public methods are its real class's, with the same parameters."""

    def test_pool_fakes_are_worker_pools(self):
        """FakePool (the management API's) and FakeWorkerPool (a data-plane process's) have WorkerPool's methods."""
        self.assertEqual(drift(WorkerPool, fakes.FakePool) + drift(WorkerPool, processes.FakeWorkerPool), [])

    def test_registry_fakes_are_service_registries(self):
        """Both fake registries have ServiceRegistry's methods."""
        self.assertEqual(drift(ServiceRegistry, fakes.FakeRegistry) + drift(ServiceRegistry, processes.FakeRegistry), [])

    def test_fake_builder_is_a_builder(self):
        """FakeBuilder has the Builder methods it fakes, with their parameters."""
        self.assertEqual(drift(Builder, fakes.FakeBuilder), [])

    def test_process_reactors_spawn_like_the_interface(self):
        """The three fake process reactors' spawnProcess takes IReactorProcess.spawnProcess's parameters."""
        wanted = list(IReactorProcess["spawnProcess"].getSignatureInfo()["positional"])
        for reactor in (FakeProcessReactor, processes.LoopbackReactor, ProcessReactor):
            self.assertEqual(parameters(reactor.spawnProcess), wanted, reactor.__name__)

    def test_drift_is_found(self):
        """A fake with a method the real class lacks, or other parameters, is reported."""

        class Real:
            def start(self, a, b=1):
                pass

        class Fake:
            def start(self, a):
                pass

            def extra(self):
                pass

        self.assertEqual(
            drift(Real, Fake),
            ["Fake.extra: Real has no such method", "Fake.start['a'] != Real['a', 'b']"],
        )
