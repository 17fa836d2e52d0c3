"""hoplab's users, run inside the lab from client nodes, through DNS, NAT and the CDN edge.

  Browser (3 of 4 users) reads the products page (cacheable) and the order form (not).
  Shopper (1 of 4) opens the order form and places orders: a database row and a mail each.

A 429 is the edge throttling this client (its rate limit), not a failure: throttle.py counts it
in a row of its own, type THROTTLED.

`hoplab load` runs it; HOPLAB_SHAPE picks a shape from shapes.py (none: plain -u/-r/-t)."""

import os
import random

import locust.stats
from locust import HttpUser, between, task

import sampling
import throttle
from shapes import SHAPES, open_model

BUYERS = ("buyer", "alice", "bob")  # the lab's mailboxes
PRODUCTS = range(1, 11)
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"  # trusts the lab CA; Locust's default bundle does not

# The --csv-full-history file on disk every second, not every 5 s: `hoplab ui` reads it while the
# run runs (its live requests/s, p50/p95, failures).
locust.stats.CSV_STATS_FLUSH_INTERVAL_SEC = 1


throttle.install()
sampling.install()  # --trace-sample N: one request in N traced end to end


class LabUser(HttpUser):
    abstract = True

    def on_start(self):
        self.client.verify = SYSTEM_CA

    def get(self, path: str, name: str) -> None:
        self.client.get(path, name=name)  # Locust's own verdict (4xx, 5xx fail), a 429 apart (throttle.py)


class Browser(LabUser):
    weight = 3
    wait_time = between(0.5, 2)

    @task(3)
    def products(self):
        # HOPLAB_CACHE_BUST: a query string nobody asked for before, so the edge always misses
        path = f"/?bust={random.getrandbits(64):x}" if os.environ.get("HOPLAB_CACHE_BUST") else "/"
        self.get(path, "GET / (cacheable)")

    @task(1)
    def order_form(self):
        self.get("/order", "GET /order (no-store)")


class Shopper(LabUser):
    weight = 1
    wait_time = between(1, 3)

    def on_start(self):
        super().on_start()
        self.email = f"{random.choice(BUYERS)}@{os.environ.get('HOPLAB_DOMAIN', 'example.test')}"

    @task
    def place_order(self):
        self.get("/order", "GET /order (no-store)")
        form = {"buyer_email": self.email, "product_id": str(random.choice(PRODUCTS)),
                "quantity": str(random.randint(1, 5))}
        with self.client.post("/order", data=form, name="POST /order", catch_response=True) as response:
            if response.status_code not in (201, 429):  # a 429: throttle.py's row, not a failure
                response.failure(f"order not placed: {response.status_code}")


shape = SHAPES.get(os.environ.get("HOPLAB_SHAPE", ""))
if shape is not None:
    Shape = shape  # the one LoadTestShape Locust finds in this module
open_model(globals())
