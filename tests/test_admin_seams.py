"""
The seams inside the endpoint manager (edgegw_tx/admin/) are typing
Protocols (the store's are its zope interfaces, store/interface.py, whose
fakes tests/test_store.py checks); these tests check that the real implementation on each side and the
test fakes that stand in for it (tests/support/control.py) have every method
of the Protocol, each accepting every call the Protocol allows. So a fake
cannot drift from the real seam and make a test pass that production fails.
"""

import inspect
from typing import Any

from twisted.trial import unittest

from edgegw_tx.admin.builds import Builder
from edgegw_tx.admin.deployments import Pool, Routes
from edgegw_tx.admin.domains import CollectionManager
from edgegw_tx.admin.ledger import Binaries
from edgegw_tx.admin.records import Placement, Uids
from edgegw_tx.build.builder import Builder as RealBuilder
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.processes.proxies import MirroredRoutes, PoolProxy
from edgegw_tx.workers.isolation import UidAllocator
from edgegw_tx.workers.pool import WorkerPool
from tests.support.control import FakeBinaries, LoggedRoutes, ScriptedPool


def _methods(protocol: type) -> dict[str, Any]:
    """The Protocol's own methods and properties (data members are not checked)."""
    return {
        name: value
        for name, value in vars(protocol).items()
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))
    }


def problems(protocol: type, implementation: type) -> list[str]:
    """What ``implementation`` lacks of ``protocol``: missing methods, calls it would refuse."""
    found = []
    for name, member in _methods(protocol).items():
        if isinstance(member, property):
            continue  # a property or an instance attribute: seen only on an instance
        real = inspect.getattr_static(implementation, name, None)
        if real is None:
            found.append(f"no {name}")
            continue
        wanted = list(inspect.signature(member).parameters.values())[1:]
        given = inspect.signature(real)
        args: list[Any] = [object()]  # self
        kwargs: dict[str, Any] = {}
        for parameter in wanted:
            if parameter.default is inspect.Parameter.empty:
                args.append(object())
            else:
                kwargs[parameter.name] = object()
        try:
            given.bind(*args, **kwargs)
        except TypeError as e:
            found.append(f"{name}{given} refuses the Protocol's call {name}{inspect.signature(member)}: {e}")
    return found


class SeamTests(unittest.TestCase):
    """Each Protocol of the manager's parts against its real implementations and its fakes."""

    def assertImplements(self, protocol: type, *implementations: type) -> None:
        """Every implementation has the Protocol's methods with compatible signatures."""
        for implementation in implementations:
            self.assertEqual(problems(protocol, implementation), [], implementation.__name__)

    def test_the_checker_sees_a_drifted_fake(self) -> None:
        """A fake with a renamed method or a parameter fewer is reported."""

        class Drifted:
            def artifact(self) -> None:
                """Takes no digest."""

            def remove(self, digest: str) -> None:
                """Not remove_artifact."""

            def fetch(self, digest: str) -> None:
                """As the Protocol has it."""

        self.assertEqual(len(problems(Binaries, Drifted)), 2)

    def test_binaries(self) -> None:
        """The ledger's binaries: the real builder and FakeBinaries."""
        self.assertImplements(Binaries, RealBuilder, FakeBinaries)

    def test_pools(self) -> None:
        """A pool: WorkerPool, the --processes PoolProxy and ScriptedPool."""
        self.assertImplements(Pool, WorkerPool, PoolProxy, ScriptedPool)

    def test_routes(self) -> None:
        """The route table: RouteTable, the --processes MirroredRoutes and LoggedRoutes."""
        self.assertImplements(Routes, RouteTable, MirroredRoutes, LoggedRoutes)

    def test_uids_placement_and_builder(self) -> None:
        """The records' uid allocator and placement, the builds' builder: their real classes."""
        self.assertImplements(Uids, UidAllocator)
        self.assertImplements(Placement, CollectionManager)
        self.assertImplements(Builder, RealBuilder)
