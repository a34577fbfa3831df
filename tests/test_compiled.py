"""
The choice between the compiled request path and its sources
(edgegw_tx/compiled.py): compiled modules are used only when all of them are
there and were built from the sources as they are now.
"""

import importlib.machinery
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx import compiled

MODULES = ("pkg.a", "pkg.sub.b")
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


class WhyPureTests(SynchronousTestCase):
    """``why_pure`` says why the compiled modules may not be used, or None."""

    def setUp(self):
        self.root = self.mktemp()
        os.makedirs(os.path.join(self.root, "sub"))
        for module in MODULES:
            with open(compiled.source_path(module, self.root), "w") as f:
                f.write(f"NAME = {module!r}\n")

    def compile(self, modules=MODULES):
        """What tools/compile-hot-path leaves: an extension beside each source, the manifest."""
        for module in modules:
            with open(compiled.source_path(module, self.root)[:-3] + SUFFIX, "wb") as f:
                f.write(b"\x7fELF")
        with open(os.path.join(self.root, compiled.MANIFEST), "w") as f:
            f.write(compiled.source_digest(self.root, MODULES) + "\n")

    def why(self, environ=None):
        return compiled.why_pure(self.root, MODULES, environ or {})

    def test_nothing_compiled(self):
        """Without extension modules the sources run, and the reason says how to compile."""
        self.assertEqual(self.why(), "not compiled (make setup compiles them)")

    def test_compiled_from_these_sources(self):
        """Every module compiled from the sources as they are: the compiled ones are used."""
        self.compile()
        self.assertIsNone(self.why())

    def test_a_source_edited_after_compiling(self):
        """One edited source sends all of them back to Python, whatever the file times say."""
        self.compile()
        with open(compiled.source_path("pkg.sub.b", self.root), "a") as f:
            f.write("# edited\n")
        self.assertEqual(
            self.why(),
            "the sources changed since they were compiled (make setup compiles them again)",
        )

    def test_one_module_not_compiled(self):
        """A compiled set with a module missing is not used, and the reason names it."""
        self.compile(modules=MODULES[:1])
        self.assertEqual(self.why(), "pkg.sub.b is not compiled")

    def test_no_manifest(self):
        """Extension modules without the record of their sources are not trusted."""
        self.compile()
        os.remove(os.path.join(self.root, compiled.MANIFEST))
        self.assertEqual(self.why(), f"no {compiled.MANIFEST} beside the compiled modules")

    def test_pure_python_asked_for(self):
        """EDGEGW_PURE_PYTHON=1 runs the sources even when the compiled modules match; 0 does not."""
        self.compile()
        self.assertEqual(self.why({compiled.PURE_ENV: "1"}), f"{compiled.PURE_ENV} is set")
        self.assertIsNone(self.why({compiled.PURE_ENV: "0"}))


class SourceFinderTests(SynchronousTestCase):
    """The finder ``choose`` installs when the sources must run."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.root, "sub"))
        self.finder = compiled._SourceFinder(self.root, MODULES)

    def test_a_compiled_module_comes_from_its_source(self):
        """One of the modules is found as its .py file, with the source loader."""
        spec = self.finder.find_spec("pkg.sub.b", None)
        self.assertEqual(spec.origin, os.path.join(self.root, "sub", "b.py"))
        self.assertIsInstance(spec.loader, importlib.machinery.SourceFileLoader)

    def test_other_modules_are_left_to_the_usual_finders(self):
        """Any other module: None, so the import system looks further."""
        self.assertIsNone(self.finder.find_spec("pkg.c", None))
        self.assertIsNone(self.finder.find_spec("edgegw_tx.cli", None))


class ThisProcessTests(SynchronousTestCase):
    """What this process runs agrees with what ``state`` says."""

    def test_state_matches_the_loaded_modules(self):
        """'compiled' iff every listed module was loaded from an extension file."""
        for module in compiled.MODULES:
            __import__(module)
        loaded = {module: sys.modules[module].__file__ for module in compiled.MODULES}
        extension = [path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) for path in loaded.values()]
        if compiled.state == "compiled":
            self.assertTrue(all(extension), loaded)
        else:
            self.assertTrue(compiled.state.startswith("pure Python ("), compiled.state)
            self.assertFalse(any(extension), loaded)

    def test_compiled_when_the_checkout_was_compiled(self):
        """After `make setup` (which compiles), this process runs the compiled request path."""
        package = os.path.dirname(compiled.__file__)
        if not os.path.exists(os.path.join(package, compiled.MANIFEST)):
            raise self.skipTest("not compiled here (EDGEGW_PURE_PYTHON=1 or no `make setup`)")
        if os.environ.get(compiled.PURE_ENV, "") not in ("", "0"):
            raise self.skipTest(f"{compiled.PURE_ENV} is set")
        self.assertEqual(compiled.state, "compiled")




class DefaultReactorTests(SynchronousTestCase):
    """
    Built without a reactor, the request path's classes take the global one
    (compiled, an import inside a function once left the parameter None).
    """

    def test_http_factory(self):
        """GatewayHTTPFactory's clock and timers are the global reactor's."""
        from twisted.internet import reactor

        from edgegw_tx.gateway.dispatch import Dispatcher
        from edgegw_tx.gateway.http import GatewayHTTPFactory
        from edgegw_tx.gateway.routes import RouteTable

        self.assertIs(GatewayHTTPFactory(Dispatcher(RouteTable())).reactor, reactor)

    def test_worker_pool_and_process(self):
        """WorkerPool spawns on, and WorkerProcess times with, the global reactor."""
        from twisted.internet import reactor

        from edgegw_tx.workers.pool import WorkerPool
        from edgegw_tx.workers.process import WorkerProcess

        self.assertIs(WorkerPool("p", ["/bin/true"])._reactor, reactor)
        self.assertIs(WorkerProcess("p")._clock, reactor)


class RememberedSeriesTests(SynchronousTestCase):
    """The observer's per-endpoint counters are found on a pool with one attribute read."""

    def test_a_worker_pool_remembers_its_series(self):
        """series_of leaves (observer, series) on a WorkerPool, compiled or not, and finds the same series by name."""
        from edgegw_tx.gateway.observe import Observer
        from edgegw_tx.observability.metrics import RequestMetrics
        from edgegw_tx.workers.pool import WorkerPool

        metrics = RequestMetrics()
        observer = Observer(metrics, lambda: 0.0)
        pool = WorkerPool("hello", ["/bin/true"])
        series = observer.series_of(pool)
        self.assertIs(series, metrics.series("hello"))
        self.assertEqual(pool._edgegw_series, (observer, series))
