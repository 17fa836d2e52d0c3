"""The durability benchmark's shopper (bench/bench_durability.py, `make bench-durability`).

One kind of user, placing orders and nothing else, through DNS, NAT, the CDN edge, the balancer
and a web replica, like the Shopper of locustfile.py. Each POST's outcome -- the order id the
shop acknowledged (201, `Location: /order/<id>`), or the status it answered instead -- is one
JSON line in out/orders.jsonl beside this file, written at once: the benchmark holds every
acknowledged order against the database and the mailbox afterwards. Locust's own statistics
cannot: they count answers, not which orders they acknowledged.

`hoplab load` runs it as a user's locustfile (hoplab.load.USER_ENTRY); the benchmark names the
host. The confirmations all go to one of the lab's mailboxes, MAILBOX (services/mail/start), at
an address of this run's own (`buyer+durability-<random>@<domain>`: Postfix's recipient delimiter
delivers it to MAILBOX), which every outcome line carries: the benchmark finds this run's orders,
outbox rows and mails by it, whatever else the lab's shop has seen."""

import json
import os
import random
import re
import secrets
import time
from pathlib import Path

from locust import HttpUser, between, task

MAILBOX = "buyer"
RUN_TAG = f"durability-{secrets.token_hex(4)}"
PRODUCTS = range(1, 11)
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"  # trusts the lab CA
OUTCOMES = Path(__file__).resolve().parent / "out" / "orders.jsonl"
LOCATION = re.compile(r"/order/([0-9]+)$")
ORDER_SPAN = re.compile(r'<span id="order-id">([0-9]+)</span>')
TIMEOUT_S = 15  # one order's bound: a request held by a dead node ends as a failure, not a hang

_outcomes = open(OUTCOMES, "a", buffering=1)  # line-buffered: every outcome is on disk as it happens


def order_id(response) -> int | None:
    """The order id a 2xx answer acknowledges: its Location header's, else its page's."""
    match = LOCATION.search(response.headers.get("Location", "")) or ORDER_SPAN.search(response.text or "")
    return int(match.group(1)) if match else None


class DurabilityShopper(HttpUser):
    wait_time = between(0.3, 1.0)

    def on_start(self):
        self.client.verify = SYSTEM_CA
        self.email = f"{MAILBOX}+{RUN_TAG}@{os.environ.get('HOPLAB_DOMAIN', 'example.test')}"

    @task
    def place_order(self):
        form = {"buyer_email": self.email, "product_id": str(random.choice(PRODUCTS)),
                "quantity": str(random.randint(1, 5))}
        with self.client.post("/order", data=form, name="POST /order", catch_response=True,
                              timeout=TIMEOUT_S) as response:
            status = response.status_code or 0  # 0: no answer (connection refused, reset, timeout)
            order = order_id(response) if 200 <= status < 300 else None
            if status != 201 or order is None:
                response.failure(f"order not acknowledged: {status}")
            _outcomes.write(json.dumps({"t": time.time(), "email": self.email, "status": status, "order": order,
                                        "served_by": response.headers.get("X-Served-By", "")}) + "\n")
