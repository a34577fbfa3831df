"""
Cluster mode: several gateways sharing one configuration in PostgreSQL.

Each node follows the store's change log (``follower``, woken by ``notify``
and by a periodic check), reconciles its own planes to the shared desired
state (``sync``), announces itself (``nodes``) and fetches the binaries
another node compiled (``artifacts``). None of it runs with a store that is
not shared (SQLite): one node, as before. See docs/cluster.md.
"""
