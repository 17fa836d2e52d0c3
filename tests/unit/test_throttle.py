"""loadtests/throttle.py on Locust's real HTTP client, against a server on loopback: a 429 is
reported as a THROTTLED request and no failure, whether or not the user's code catches the
response; a verdict the user gives stands; other errors stay failures. In a Python of its own:
importing Locust monkey-patches the process (gevent), which a test runner's threads do not
survive."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CLIENT = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from locust.clients import HttpSession
from locust.event import Events
import throttle

STATUS = {"/": 200, "/limited": 429, "/broken": 500}

class Answers(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(STATUS[self.path])
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
threading.Thread(target=server.serve_forever, daemon=True).start()
events, seen = Events(), []
events.request.add_listener(lambda request_type, name, exception, **kw: seen.append(
    [request_type, name, exception is not None]))
if sys.argv[1] == "installed":
    throttle.install()
client = HttpSession(f"http://127.0.0.1:{server.server_address[1]}", events.request, user=None)
client.get("/limited", name="plain")
with client.get("/limited", name="caught", catch_response=True):
    pass  # the user's code gives no verdict
with client.get("/limited", name="strict", catch_response=True) as response:
    response.failure("this user wants no 429")
client.get("/broken", name="broken")
client.get("/", name="fine")
server.shutdown()
print(json.dumps(seen))
"""


def reported(mode: str) -> list[list]:
    result = subprocess.run([sys.executable, "-c", CLIENT, mode], capture_output=True, text=True, timeout=60,
                            cwd=ROOT / "loadtests")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_429_is_throttled_not_failed_unless_the_user_says_otherwise():
    assert reported("installed") == [["THROTTLED", "plain", False], ["THROTTLED", "caught", False],
                                     ["GET", "strict", True], ["GET", "broken", True], ["GET", "fine", False]]


def test_without_it_locust_fails_every_429():  # what install() changes, so the test above can fail
    assert reported("plain") == [["GET", "plain", True], ["GET", "caught", True], ["GET", "strict", True],
                                 ["GET", "broken", True], ["GET", "fine", False]]
