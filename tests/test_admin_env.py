"""
An endpoint's ``settings.env`` is where its handlers get secrets: read-scope
keys see the values masked (the services' mask), admin keys see them.
"""


from edgegw_tx.services.config import MASK
from tests.support.admin import AdminAPITestCase

SECRET = "postgres://app:hunter2@db/app"


class EnvMaskingTests(AdminAPITestCase):
    """Every GET that shows endpoints, with a read key and with an admin key."""

    def make(self) -> dict:
        collection = self.created("/api/collections", {"name": "v1"})
        endpoint = self.created(
            "/api/endpoints",
            {"name": "users", "path": "/users", "method": "GET", "collection_id": collection["id"],
             "settings": {"env": {"DATABASE_URL": SECRET, "EMPTY": ""}}},
        )
        return endpoint

    def views(self, key: str, endpoint: dict) -> list:
        """The endpoint as GET one, the list and its collection's list show it to ``key``."""
        code, one = self.call("GET", "/api/endpoints/" + endpoint["id"], key=key)
        self.assertEqual(code, 200, one)
        code, listed = self.call("GET", "/api/endpoints", key=key)
        self.assertEqual(code, 200, listed)
        code, in_collection = self.call("GET", f"/api/collections/{endpoint['collection_id']}/endpoints", key=key)
        self.assertEqual(code, 200, in_collection)
        return [one["data"], listed["data"]["items"][0], in_collection["data"]["items"][0]]

    def test_read_key_sees_env_values_masked(self) -> None:
        """GET one, the list and a collection's endpoints show a read key every set env value as the mask; names and empty values stay."""
        for view in self.views("read", self.make()):
            self.assertEqual(view["settings"]["env"], {"DATABASE_URL": MASK, "EMPTY": ""})
        code, document = self.call("GET", "/api/endpoints", key="read")
        self.assertNotIn("hunter2", repr(document))

    def test_admin_key_sees_env_values(self) -> None:
        """An admin key sees the values as stored; what a read key saw changed nothing."""
        endpoint = self.make()
        self.call("GET", "/api/endpoints", key="read")
        for view in self.views("admin", endpoint):
            self.assertEqual(view["settings"]["env"], {"DATABASE_URL": SECRET, "EMPTY": ""})
