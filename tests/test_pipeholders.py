"""
Ending a child command with every process still holding its pipes
(edgegw_tx/pipeholders.py): the rounds on a fake reactor, and real
processes that outlive the pid the reactor spawned.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.hostcommands import ProcessOutput, Running, _Collector, run
from edgegw_tx.pipeholders import GRACE_SECONDS, ROUND_SECONDS, end, holders, kill_holders, pipe_inodes
from tests.support.builds import ProcessReactor
from tests.support.hardening import alive, wait_for


class Pipe:
    """One end of a pipe as Twisted's process transport keeps it (``fileno``)."""

    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


class FakeTransport:
    """A process transport that records what is done to it."""

    def __init__(self, pipes=None):
        self.pipes = pipes or {}
        self.signals = []
        self.lost = 0

    def closeStdin(self):
        pass

    def signalProcess(self, name):
        self.signals.append(name)

    def loseConnection(self):
        self.lost += 1


class Killer:
    """A fake ``kill``: records each round's inodes; each round fires when the test says."""

    def __init__(self):
        self.rounds = []

    def __call__(self, inodes, wait):
        d = Deferred()
        self.rounds.append((inodes, d))
        return d


class EndRoundsTests(unittest.TestCase):
    """end() on a Clock, with a fake transport and a fake killer."""

    def setUp(self):
        self.clock = Clock()
        self.kill = Killer()
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        self.inode = os.fstat(r).st_ino
        self.transport = FakeTransport({1: Pipe(r)})
        self.ended = Deferred()

    def test_kills_the_process_and_its_pipes_holders_until_it_ended(self):
        """SIGKILL to the spawned pid, then a round on the pipes' inodes every ROUND_SECONDS; none once the process ended."""
        finished = end(self.clock, self.transport, self.ended, kill=self.kill)
        self.assertEqual(self.transport.signals, ["KILL"])
        self.assertEqual([inodes for inodes, _ in self.kill.rounds], [frozenset([self.inode])])
        self.kill.rounds[0][1].callback([4242])
        self.clock.advance(ROUND_SECONDS)
        self.assertEqual(len(self.kill.rounds), 2)
        self.kill.rounds[1][1].callback([])
        self.ended.callback("ended")
        self.successResultOf(finished)
        self.clock.advance(10 * ROUND_SECONDS)
        self.assertEqual(len(self.kill.rounds), 2)
        self.assertEqual(self.transport.lost, 0)

    def test_waits_for_the_round_in_flight(self):
        """The process ending while a round still kills (and waits for) its holders: end fires after that round."""
        finished = end(self.clock, self.transport, self.ended, kill=self.kill)
        self.ended.callback("ended")
        self.assertNoResult(finished)
        self.kill.rounds[0][1].callback([4242])
        self.successResultOf(finished)

    def test_closes_its_ends_after_the_grace(self):
        """Holders that never let go: after GRACE_SECONDS the gateway's ends are closed once, with a warning; end fires once ended does."""
        finished = end(self.clock, self.transport, self.ended, kill=self.kill)
        while not self.transport.lost:
            self.kill.rounds[-1][1].callback([4242])
            self.clock.advance(ROUND_SECONDS)
        self.assertGreaterEqual(self.clock.seconds(), GRACE_SECONDS)
        self.clock.advance(10 * ROUND_SECONDS)
        self.assertEqual(self.transport.lost, 1)
        self.assertNoResult(finished)
        self.ended.callback("ended")
        self.successResultOf(finished)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_an_ended_process_is_left_alone(self):
        """Already ended: no signal, no round."""
        self.ended.callback("ended")
        self.successResultOf(end(self.clock, self.transport, self.ended, kill=self.kill))
        self.assertEqual((self.transport.signals, self.kill.rounds), ([], []))

    def test_pipe_inodes_skips_closed_pipes(self):
        """A pipe the gateway closed already is not looked for; a transport without pipes has none."""
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        self.assertEqual(pipe_inodes(FakeTransport({1: self.transport.pipes[1], 2: Pipe(r)})), {self.inode})
        self.assertEqual(pipe_inodes(object()), frozenset())


class RunTimeoutTests(unittest.TestCase):
    """hostcommands.run's timeout ends the command with end()."""

    def test_timeout_kills_and_waits_for_the_end(self):
        """After the timeout, KILL is sent; the output (signal 9) comes once the process ended, not before."""
        clock = ProcessReactor()
        d = run(clock, ["/bin/true"], {}, "/", timeout=10)
        [child] = clock.children
        clock.advance(10)
        self.assertEqual(child.signals, ["KILL"])
        self.assertNoResult(d)
        child.killed(9)
        self.assertEqual(self.successResultOf(d), ProcessOutput(b"", b"", None, 9))


LEAVES_A_HOLDER = """\
(trap '' TERM; exec sleep 1000) &
echo $! > '{pidfile}'
exec sleep 1000
"""


class RealHolderIntegrationTests(unittest.TestCase):
    """A real command that leaves a child holding its pipes and ignoring SIGTERM (as bwrap's orphaned clone does)."""

    timeout = 60

    @inlineCallbacks
    def spawn(self):
        """Spawn the command; fires with (its protocol, its transport, the pid of the child it left)."""
        pidfile = os.path.abspath(self.mktemp())
        proto = _Collector()
        argv = ["/bin/sh", "-c", LEAVES_A_HOLDER.format(pidfile=pidfile)]
        transport = reactor.spawnProcess(proto, argv[0], argv, env={}, path="/")

        def read():
            try:
                with open(pidfile) as f:
                    return int(f.read())
            except (OSError, ValueError):
                return None

        holder = yield wait_for(read, 50, message="the left child's pid")
        return proto, transport, holder

    @inlineCallbacks
    def test_end_kills_the_child_left_holding_the_pipes(self):
        """end() fires after the spawned pid and the child holding its pipes are both gone; the output says signal 9."""
        proto, transport, holder = yield self.spawn()
        self.assertIn(holder, holders(pipe_inodes(transport)))
        yield end(reactor, transport, proto.ended)
        output = yield proto.ended
        self.assertEqual(output.signal, 9)
        self.assertFalse(alive(holder))

    def test_kill_holders_finds_nothing_for_no_pipes(self):
        """No inodes: nothing is looked for, nothing killed."""
        self.assertEqual(kill_holders(frozenset(), 1.0), [])


class DocsTests(unittest.TestCase):
    """The docs name the grace the code uses."""

    def test_docs_say_the_grace(self):
        """operations.md, isolation.md and the README's first-compile paragraph give GRACE_SECONDS."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        said = "%g s" % GRACE_SECONDS
        for name, where in (("docs/operations.md", "at most "), ("docs/isolation.md", "After "), ("README.md", "within ")):
            with open(os.path.join(root, name)) as f:
                self.assertIn(where + said, " ".join(f.read().split()), name)


class RunningTests(unittest.TestCase):
    """hostcommands.Running: what an owner's stop ends."""

    def test_end_all_ends_the_commands_still_running_only(self):
        """end_all kills the commands still running (not one that ended) and fires once they ended."""
        clock = ProcessReactor()
        running = Running()
        first = run(clock, ["/bin/true"], {}, "/", running=running)
        run(clock, ["/bin/true"], {}, "/", running=running)
        done, child = clock.children
        done.exit(0)
        self.successResultOf(first)
        ended = running.end_all(clock)
        self.assertEqual((done.signals, child.signals), ([], ["KILL"]))
        self.assertNoResult(ended)
        child.killed(9)
        self.successResultOf(ended)
        self.successResultOf(running.end_all(clock))
