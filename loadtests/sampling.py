"""One request in N traced end to end while the load runs (`hoplab load --trace-sample N`).

`install()` wraps the requests of every user of the run, hoplab's and a user's own locustfile
alike (HttpUser and FastHttpUser): every Nth request of this process carries a sampled W3C
`traceparent` (flags 01), which the edge logs, the balancer and the replicas pass on and the web
app's SQL carries; the rest go as they were. Each sampled request is one JSON line in
HOPLAB_SAMPLES: its trace id, name, URL, status and the client's own start and end (ns since the
epoch, the clock the capture's timestamps use). hoplab reads the lines back and asks the control
service for each sample's trace: the hops of that request alone, on connections many share."""

import json
import os
import secrets
import threading
import time

EVERY = int(os.environ.get("HOPLAB_TRACE_SAMPLE") or 0)  # 0: nothing is sampled
SAMPLES = os.environ.get("HOPLAB_SAMPLES", "/run/hoplab/load/out/samples.jsonl")
_lock = threading.Lock()
_count = 0


def _sampled() -> bool:
    """Every EVERYth request of this process, the first one included."""
    global _count
    with _lock:
        _count += 1
        return EVERY > 0 and (_count - 1) % EVERY == 0


def _write(line: dict) -> None:
    with _lock, open(SAMPLES, "a") as handle:  # a short line, appended whole: workers on one node share it
        handle.write(json.dumps(line) + "\n")


def _sampling(request):
    def sampled_request(self, method, url, name=None, *args, **kwargs):
        if not _sampled():
            return request(self, method, url, name, *args, **kwargs)
        trace_id = secrets.token_hex(16)
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        start = time.time_ns()
        response = request(self, method, url, name, *args, **kwargs)
        end = time.time_ns()
        _write({"trace_id": trace_id, "method": str(method).upper(), "name": name or str(url),
                "url": str(getattr(response, "url", "") or url), "status": int(getattr(response, "status_code", 0) or 0),
                "start_ns": start, "end_ns": end})
        return response
    sampled_request.__wrapped__ = request
    return sampled_request


def install() -> None:
    if EVERY <= 0:
        return
    from locust.clients import HttpSession
    from locust.contrib.fasthttp import FastHttpSession

    for session in (HttpSession, FastHttpSession):
        if not hasattr(session.request, "__wrapped__"):
            session.request = _sampling(session.request)
