"""An irctest controller for stage 10: irctest starts our server for each of its tests.

irctest (https://github.com/progval/irctest) is the IRC world's conformance suite.
It is not on this kit's requirements: its PyPI release (0.1.2) does not build, so it
runs from a clone. The command, and what passed and failed, are in
tests/irctest-results.txt.
"""

import sys
from pathlib import Path

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

SERVER_PY = Path(__file__).resolve().parent.parent / "stages" / "10" / "server.py"


class Kit10Controller(BaseServerController, DirectoryBasedController):
    software_name = "kit stage 10"
    supported_sasl_mechanisms: set = set()
    supports_sts = False

    def run(self, hostname, port, *, password, ssl, run_services, faketime,
            websocket_hostname, websocket_port):
        for wanted, what in ((ssl, "TLS"), (password, "PASS"), (run_services, "services"),
                             (websocket_port, "Websocket")):
            if wanted:
                raise NotImplementedByController(what)
        self.port, self.hostname = port, hostname
        self.create_config()
        # irctest's checks expect the name its own configurations give servers.
        self.proc = self.execute([sys.executable, SERVER_PY, "--host", hostname,
                                  "--port", str(port), "--name", "My.Little.Server"])


def get_irctest_controller_class():
    return Kit10Controller
