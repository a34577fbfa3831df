"""
The data plane: route table, HTTP ↔ IPC translation, and the HTTP front.

``routes`` (``RouteTable``) and ``dispatch`` (``Dispatcher``) know no HTTP
server; ``web`` is the lean twisted.web front, to be replaced by a faster HTTP
layer behind the same ``Dispatcher`` seam.
"""
