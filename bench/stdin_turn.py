"""
What one reactor turn's write to a worker's stdin costs the gateway, in
process and without a worker: Twisted's pipe writer on a real pipe and an
unstarted epoll reactor, the same bytes (a turn's frames) written each way.

  twisted    ``writer.write`` then the ``doWrite`` the reactor makes once the
             pipe is writable (the writer added to the reactor and removed
             again: four epoll_ctl calls)
  direct     what WorkerProcess does: a ``callLater(0)`` run at the turn's end,
             then ``writeSomeData`` (one os.write) with the writer's buffer empty

Each iteration also reads the pipe empty (the worker's side), measured alone
as ``read``.  CPU microseconds per turn, best of --repeat runs.

    .venv/bin/python bench/stdin_turn.py [--turns 100000] [--bytes 700] [--repeat 3]
"""

import argparse
import os
import time

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.process import ProcessWriter


class _Process:
    """The writer's process: told when the pipe closes (never here)."""

    def childConnectionLost(self, fd, reason):
        pass


def _nothing():
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=100_000)
    parser.add_argument("--bytes", type=int, default=700, help="bytes per turn (seven 100-byte frames)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reactor = EPollReactor()
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    writer = ProcessWriter(reactor, _Process(), 0, write_fd)
    data = b"x" * args.bytes

    def twisted():
        writer.write(data)
        writer.doWrite()
        os.read(read_fd, 1 << 18)

    def direct():
        reactor.callLater(0, _nothing)
        reactor.runUntilCurrent()
        if not writer.dataBuffer and not writer._tempDataBuffer and writer.connected and not writer.disconnecting:
            writer.writeSomeData(data)
        os.read(read_fd, 1 << 18)

    def read():
        os.write(write_fd, data)
        os.read(read_fd, 1 << 18)

    best = {}
    for _ in range(args.repeat):
        for way in (twisted, direct, read):
            start = time.process_time()
            for _ in range(args.turns):
                way()
            spent = (time.process_time() - start) / args.turns * 1e6
            best[way.__name__] = min(spent, best.get(way.__name__, spent))
    for name, spent in best.items():
        print(f"{name:8} {spent:6.2f} µs per turn")
    os.close(read_fd)
    os.close(write_fd)


if __name__ == "__main__":
    main()
