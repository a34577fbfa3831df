"""
Several data-plane processes behind one listening socket (``--processes N``).

One Python process uses one core. With N > 1 the control process (twistd)
keeps the store, the management API, the builder and the keys, binds the
public socket once and runs N data-plane processes that adopt it; each has
its own route table, worker pools and service connectors, kept in step by
the control process's commands (docs/processes.md).

* ``channel`` — ``ControlChannel``: calls, answers and notes as frames over a
  stream (the child's stdin/stdout).
* ``state`` — ``PlaneState``: the commands applied so far, replayed to a
  process that starts late.
* ``group`` — ``ProcessGroup``: spawns, feeds, respawns and stops the processes.
* ``proxies`` — ``PoolProxy``, ``MirroredRoutes``, ``MirroredRegistry``: what the
  control process's managers are given instead of the real objects.
* ``dataplane`` — ``DataPlane``: a data-plane process's routes, pools and
  services, run by the commands.
* ``accept`` — ``BalancedAccept``: accepting from the shared socket so that
  connections spread over the processes.
* ``child`` — the data-plane process's program (wiring only).

Arrows: ``group`` and ``proxies`` → ``channel``, ``state``; ``dataplane``
knows only the objects it is given; nothing here imports ``admin``; only
``child`` (like ``runtime``) imports the data plane.
"""

from edgegw_tx.processes.group import NotSharable, ProcessGroup, check_sharable
from edgegw_tx.processes.proxies import MirroredRegistry, MirroredRoutes, PoolProxy

__all__ = [
    "MirroredRegistry",
    "MirroredRoutes",
    "NotSharable",
    "PoolProxy",
    "ProcessGroup",
    "check_sharable",
]
