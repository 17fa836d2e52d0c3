"""Load for the notes API, run from the lab's client (`hoplab load`, which picks this file from
the topology's `load: locustfile:`): through the lab DNS, the NAT, the edge (HTTPS) and the
balancer, to both replicas and Redis. Writers create notes; readers read them back."""

import os
import random

from locust import HttpUser, between, task


class NotesUser(HttpUser):
    host = f"https://api.{os.environ.get('HOPLAB_DOMAIN', 'notes.test')}"
    wait_time = between(0.2, 1.0)

    def on_start(self):
        self.mine = []

    @task(1)
    def write(self):
        with self.client.post("/notes", json={"text": f"note {random.getrandbits(32):x}"}, name="POST /notes",
                              catch_response=True) as answer:
            if answer.status_code == 201:
                self.mine.append(answer.json()["id"])
            else:
                answer.failure(f"{answer.status_code}: {answer.text[:100]}")

    @task(3)
    def read(self):
        if self.mine:
            self.client.get(f"/notes/{random.choice(self.mine)}", name="GET /notes/<id>")
        else:
            self.client.get("/notes", name="GET /notes")
