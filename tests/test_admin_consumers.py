"""
``/api/consumers`` (admin/consumers.py): consumers and their keys over the
management API, and the data plane's keys reloaded by every change.
"""

from tests.support.admin import AdminAPITestCase


class ConsumerAPITests(AdminAPITestCase):
    """CRUD of consumers and keys; the runtime's ``ConsumerKeys`` follow."""

    def lookup(self, key):
        """The consumer name the data plane finds for ``key`` (None: refused)."""
        return self.runtime.policy_context.consumers.lookup(key)

    def test_crud_and_names_unique_ignoring_case(self):
        """POST (201, enabled by default), GET one and the list, PUT, DELETE; a taken name in any case is 409."""
        created = self.created("/api/consumers", {"name": " mobile "})
        self.assertEqual((created["name"], created["enabled"], created["keys"]), ("mobile", True, []))
        self.assertEqual(self.call("GET", "/api/consumers/" + created["id"])[1]["data"], created)
        listed = self.call("GET", "/api/consumers")[1]["data"]
        self.assertEqual((listed["total"], listed["items"]), (1, [created]))
        code, document = self.call("POST", "/api/consumers", {"name": "MOBILE"})
        self.assertEqual((code, document["field"]), (409, "name"))
        code, document = self.call("PUT", "/api/consumers/" + created["id"], {"name": "web", "enabled": False})
        self.assertEqual((code, document["data"]["name"], document["data"]["enabled"]), (200, "web", False))
        code, document = self.call("DELETE", "/api/consumers/" + created["id"])
        self.assertEqual((code, document["data"]), (200, {"id": created["id"], "deleted": True}))
        self.assertEqual(self.call("GET", "/api/consumers/" + created["id"])[0], 404)

    def test_bad_input_is_a_400_naming_the_field(self):
        """A blank or missing name, a non-boolean enabled and an unknown field are 400s naming them."""
        for body, field in (({"name": "  "}, "name"), ({}, "name"), ({"name": "a", "enabled": "yes"}, "enabled"),
                            ({"name": "a", "role": "x"}, "role")):
            code, document = self.call("POST", "/api/consumers", body)
            self.assertEqual((code, document.get("field")), (400, field), body)
        self.assertEqual(self.call("GET", "/api/consumers")[1]["data"]["total"], 0)

    def test_a_key_is_shown_once_and_authenticates_until_deleted(self):
        """POST keys answers the key once; GET lists only its id; the data plane knows it at once, and not after DELETE."""
        consumer = self.created("/api/consumers", {"name": "mobile"})
        key = self.created("/api/consumers/%s/keys" % consumer["id"], None)
        self.assertEqual(set(key), {"id", "consumer_id", "key", "created_at"})
        self.assertEqual(self.lookup(key["key"]), "mobile")
        shown = self.call("GET", "/api/consumers/" + consumer["id"])[1]["data"]["keys"]
        self.assertEqual(shown, [{"id": key["id"], "created_at": key["created_at"]}])
        self.assertNotIn(key["key"], str(self.call("GET", "/api/consumers")[1]))
        code, document = self.call("DELETE", "/api/consumers/%s/keys/%s" % (consumer["id"], key["id"]))
        self.assertEqual((code, document["data"]["deleted"]), (200, True))
        self.assertIsNone(self.lookup(key["key"]))
        self.assertEqual(self.call("DELETE", "/api/consumers/%s/keys/%s" % (consumer["id"], key["id"]))[0], 404)
        self.assertEqual(self.call("POST", "/api/consumers/nope/keys")[0], 404)

    def test_a_disabled_or_deleted_consumer_is_refused(self):
        """Disabling a consumer refuses its keys at once, enabling admits them again, deleting it drops them."""
        consumer = self.created("/api/consumers", {"name": "mobile"})
        key = self.created("/api/consumers/%s/keys" % consumer["id"], None)["key"]
        self.call("PUT", "/api/consumers/" + consumer["id"], {"enabled": False})
        self.assertIsNone(self.lookup(key))
        self.call("PUT", "/api/consumers/" + consumer["id"], {"enabled": True})
        self.assertEqual(self.lookup(key), "mobile")
        self.call("DELETE", "/api/consumers/" + consumer["id"])
        self.assertIsNone(self.lookup(key))

    def test_read_keys_may_list_but_not_change(self):
        """A read key may GET consumers but not create one (403)."""
        self.assertEqual(self.call("GET", "/api/consumers", key="read")[0], 200)
        self.assertEqual(self.call("POST", "/api/consumers", {"name": "x"}, key="read")[0], 403)

    def test_a_write_at_an_old_revision_is_412(self):
        """PUT or DELETE with an If-Match that is not the consumer's revision is 412 and changes nothing."""
        consumer = self.created("/api/consumers", {"name": "mobile"})
        stale = {"If-Match": '"%d"' % (consumer["revision"] + 100)}
        code, _, document = self.exchange("PUT", "/api/consumers/" + consumer["id"], {"enabled": False}, headers=stale)
        self.assertEqual(code, 412, document)
        code, _, document = self.exchange("DELETE", "/api/consumers/" + consumer["id"], headers=stale)
        self.assertEqual(code, 412, document)
        self.assertTrue(self.call("GET", "/api/consumers/" + consumer["id"])[1]["data"]["enabled"])
        current = {"If-Match": '"%d"' % consumer["revision"]}
        code, _, document = self.exchange("PUT", "/api/consumers/" + consumer["id"], {"enabled": False}, headers=current)
        self.assertEqual((code, document["data"]["enabled"]), (200, False))
