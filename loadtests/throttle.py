"""A 429 is the edge throttling a client (its rate limit), not a failure: it is counted in a row
of its own (same name, type THROTTLED) as a success, and leaves the endpoint's failures and
latencies alone. `install()` does it for every HttpUser of a run, hoplab's and a user's own
locustfile alike (`hoplab load` copies this file beside both). A verdict the user's code gives
(`response.failure()` in a `catch_response` block) stands."""

from locust.clients import ResponseContextManager

THROTTLED = "THROTTLED"  # the request type of a 429's row (hoplab.load reads it by this name)
_locusts_exit = ResponseContextManager.__exit__


def _exit_counting_throttled(self, exc, value, traceback):
    # every request ends here (Locust 2.x reports one without a with-block through it too)
    if exc is None and self._manual_result is None and self.status_code == 429:
        self.request_meta["request_type"] = THROTTLED
        self._manual_result = True  # success(), which Locust allows only inside a with-block
    return _locusts_exit(self, exc, value, traceback)


def install() -> None:
    ResponseContextManager.__exit__ = _exit_counting_throttled
