"""The bubblewrap pieces the build and worker sandboxes share (edgegw_tx/sandboxing.py)."""

import pwd

from twisted.trial import unittest

from edgegw_tx.sandboxing import system_binds, user_ids


class SystemBindsTests(unittest.TestCase):
    def test_links_directories_and_missing(self) -> None:
        """A symlink is recreated as the same symlink, a directory bound read-only, a missing path left out."""
        host = {"/usr": None, "/lib": "usr/lib", "/bin": "usr/bin"}
        options = system_binds(
            ("/usr", "/lib", "/bin", "/libx32"),
            lexists=lambda p: p in host,
            islink=lambda p: host.get(p) is not None,
            readlink=lambda p: host[p],
        )
        self.assertEqual(
            options,
            ["--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/bin", "/bin"],
        )


class UserIdsTests(unittest.TestCase):
    def test_name(self) -> None:
        """A user name gives its uid and its primary group."""
        nobody = pwd.getpwnam("nobody")
        self.assertEqual(user_ids("nobody"), ("nobody", nobody.pw_uid, nobody.pw_gid))

    def test_numbers_need_no_account(self) -> None:
        """uid and uid:gid numbers work without an entry in /etc/passwd; a lone uid is also the gid."""
        self.assertEqual(user_ids("64999:64998")[1:], (64999, 64998))
        self.assertEqual(user_ids("64997")[1:], (64997, 64997))

    def test_unknown_name(self) -> None:
        """An unknown user or group name raises KeyError, which each sandbox turns into its own message."""
        self.assertRaises(KeyError, user_ids, "no-such-user-edgegw")
        self.assertRaises(KeyError, user_ids, "nobody:no-such-group-edgegw")
