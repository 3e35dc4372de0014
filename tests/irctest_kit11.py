"""An irctest controller for stage 11: irctest starts our server for each of its tests.

irctest (https://github.com/progval/irctest) is the IRC world's conformance suite.
It is not on this kit's requirements: its PyPI release (0.1.2) does not build, so it
runs from a clone. The command, and what passed and failed, are in
tests/irctest-results.txt.
"""

import atexit
import sys
from pathlib import Path

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

SERVER_PY = Path(__file__).resolve().parent.parent / "stages" / "11" / "server.py"
STARTED = []  # every server this process (one xdist worker) started


def stop_all():
    """Kill what earlier tests left running. irctest's bot_mode tests skip inside
    setUp, after the server has started, so unittest never calls their tearDown."""
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    STARTED.clear()


atexit.register(stop_all)


class Kit10Controller(BaseServerController, DirectoryBasedController):
    software_name = "kit stage 11"
    supported_sasl_mechanisms: set = set()
    supports_sts = False

    def run(self, hostname, port, *, password, ssl, run_services, faketime,
            websocket_hostname, websocket_port):
        for wanted, what in ((ssl, "TLS"), (password, "PASS"), (run_services, "services"),
                             (websocket_port, "Websocket")):
            if wanted:
                raise NotImplementedByController(what)
        stop_all()  # a worker runs one test at a time: anything still running is a leak
        self.port, self.hostname = port, hostname
        self.create_config()
        # Loopback only, whatever irctest picked (it binds "" to find a free port, and
        # so passes 0.0.0.0); connecting to 0.0.0.0 reaches 127.0.0.1 on Linux. And the
        # server's name that irctest's checks expect.
        self.proc = self.execute([sys.executable, SERVER_PY, "--host", "127.0.0.1",
                                  "--port", str(port), "--name", "My.Little.Server"])
        STARTED.append(self.proc)


def get_irctest_controller_class():
    return Kit10Controller
