"""
The endpoint views on their own (edgegw_tx/admin/views.py): what the API shows
of a stored record joined with what runs, without pools or a store.
"""

from typing import Any

from twisted.trial import unittest

from edgegw_tx.admin.views import Live, endpoint_view, node_workers, short, version_views
from tests.support.fakes import endpoint

A = "a" * 64
B = "b" * 64


class EndpointViewTests(unittest.TestCase):
    """``endpoint_view`` and ``version_views``."""

    def test_the_view_hides_the_path_shape_and_shows_the_route(self) -> None:
        """``path_shape`` is the store's business; ``route`` uses the served (full) path."""
        view = endpoint_view(endpoint(deployed=None), Live(), "/v1/hello")
        self.assertNotIn("path_shape", view)
        self.assertEqual(view["route"], "GET */v1/hello")
        self.assertEqual((view["pids"], view["workers"], view["queue"], view["version"]), ([], [], 0, None))

    def test_the_version_is_what_runs_else_what_last_ran(self) -> None:
        """A running pool's digest wins over the record's ``deployed`` one; both shortened."""
        record = endpoint(deployed=A)
        self.assertEqual(endpoint_view(record, Live(digest=B), "/hello")["version"], short(B))
        self.assertEqual(endpoint_view(record, Live(), "/hello")["version"], A[:12])

    def test_the_settings_are_shown_with_their_defaults(self) -> None:
        """Stored settings lacking a key are shown with its default filled in."""
        view = endpoint_view(endpoint(deployed=None, settings={}), Live(), "/hello")
        self.assertIn("max_instances", view["settings"])

    def test_running_state_is_copied_not_shared(self) -> None:
        """The view's pids and workers are its own lists, safe to encode after the pool changes."""
        live = Live(pids=[7], workers=[{"pid": 7}], queue=2, digest=A)
        view = endpoint_view(endpoint(deployed=A), live, "/hello")
        view["pids"].append(8)
        self.assertEqual((live.pids, view["queue"]), ([7], 2))

    def test_versions_are_flagged_live_current_and_available(self) -> None:
        """Each version row says whether it runs, is the current code's build, and can be rolled back to."""
        rows: list[dict[str, Any]] = [{"digest": B}, {"digest": A}]
        record = endpoint(deployed=A, artifact=B)
        views = version_views(rows, record, None, lambda digest: digest == A)
        flags = [(v["short"], v["live"], v["current"], v["available"]) for v in views]
        self.assertEqual(flags, [(B[:12], False, True, False), (A[:12], True, False, True)])
        live_b = version_views(rows, record, B, lambda digest: True)
        self.assertEqual([v["live"] for v in live_b], [True, False])


class NodeWorkersTests(unittest.TestCase):
    """``node_workers``: an endpoint's workers per node, for its view."""

    NODES = [
        {"name": "b", "state": "up", "endpoints": {"e1": 2, "e2": 5}},
        {"name": "a", "state": "up", "endpoints": {"e1": 9}},
        {"name": "c", "state": "down", "endpoints": {"e1": 4}},
        {"name": "d", "state": "up", "endpoints": {}},
    ]

    def test_nodes_up_with_own_live_count(self) -> None:
        """Every node up (0 where it runs none), a down one left out, this node's live count over its heartbeat."""
        self.assertEqual(node_workers("e1", self.NODES, "a", 3), {"a": 3, "b": 2, "d": 0})

    def test_own_node_not_yet_listed(self) -> None:
        """This node shows before its first heartbeat reached the store."""
        self.assertEqual(node_workers("e2", self.NODES[:1], "z", 1), {"b": 5, "z": 1})
        self.assertEqual(node_workers("e2", [], "z", 0), {"z": 0})
