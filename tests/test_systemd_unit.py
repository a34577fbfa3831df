"""
contrib/edgegw.service, the systemd unit docs/operations.md installs: systemd
itself finds nothing wrong with it, and every ``twistd edgegw`` option it
passes is one the gateway has.
"""

import os
import shlex
import shutil
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from edgegw_tx.tap import Options
from tests.support.harness import ROOT

UNIT = os.path.join(ROOT, "contrib", "edgegw.service")
INSTALLED_TWISTD = "/opt/edgegw/.venv/bin/twistd"


def _exec_start(text: str) -> list[str]:
    """The unit's ExecStart command line, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    line = next(line for line in joined.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):])


class SystemdUnitTests(unittest.TestCase):
    """The shipped unit file."""

    @inlineCallbacks
    def test_systemd_analyze_verify_is_clean(self):
        """
        ``systemd-analyze verify`` passes with no warning (an unknown key or a
        bad value is only a warning), the install path of twistd replaced by
        this checkout's, since verify checks that the program exists.
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise unittest.SkipTest("systemd-analyze is not installed (Debian's systemd package has it)")
        with open(UNIT) as f:
            text = f.read()
        self.assertIn(INSTALLED_TWISTD, text)
        folder = self.mktemp()
        os.makedirs(folder)
        unit = os.path.join(folder, "edgegw.service")
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        with open(unit, "w") as f:
            f.write(text.replace(INSTALLED_TWISTD, twistd))
        out, err, code = yield getProcessOutputAndValue(analyze, ["verify", unit], env=dict(os.environ))
        self.assertEqual((code, err.decode(), out.decode()), (0, "", ""))

    def test_options_are_the_gateways(self):
        """Each ``--option`` of the unit's ``twistd edgegw`` command is one of ``twistd edgegw --help``."""
        with open(UNIT) as f:
            argv = _exec_start(f.read())
        self.assertEqual(argv[:4], [INSTALLED_TWISTD, "-n", "--pidfile=", "edgegw"])
        known = {p[0] for p in Options.optParameters} | {f[0] for f in Options.optFlags}
        given = [a[2:].split("=")[0] for a in argv[4:] if a.startswith("--")]
        self.assertTrue(given)
        self.assertEqual([g for g in given if g not in known], [])
