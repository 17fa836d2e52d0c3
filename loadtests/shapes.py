"""Load shapes, chosen by name (`hoplab load --shape NAME`). Each scales to the run's users
(HOPLAB_USERS), spawn rate (HOPLAB_RATE) and duration (HOPLAB_TIME, seconds), and ends by
itself at the time bound. steady, step and spike are closed models (a user waits for its
answer before it asks again, so a slow server is asked less); open is an open model."""

import os

from locust import LoadTestShape, User, constant_pacing

USERS = int(os.environ.get("HOPLAB_USERS", "10"))
RATE = float(os.environ.get("HOPLAB_RATE", "5"))
TIME = int(os.environ.get("HOPLAB_TIME", "30"))


class Steady(LoadTestShape):
    """All users, from the start to the end."""

    def tick(self):
        return (USERS, RATE) if self.get_run_time() < TIME else None


class Step(LoadTestShape):
    """A quarter of the users more every quarter of the time."""

    def tick(self):
        run_time = self.get_run_time()
        if run_time >= TIME:
            return None
        step = min(int(run_time / (TIME / 4)) + 1, 4)
        return (max(1, USERS * step // 4), RATE)


class Spike(LoadTestShape):
    """A fifth of the users, all of them for the middle fifth of the time, then back."""

    def tick(self):
        run_time = self.get_run_time()
        if run_time >= TIME:
            return None
        in_spike = 0.4 * TIME <= run_time < 0.6 * TIME
        return (USERS if in_spike else max(1, USERS // 5), max(RATE, USERS) if in_spike else RATE)


class Open(LoadTestShape):
    """An open model: a constant arrival rate (HOPLAB_ARRIVAL_RATE tasks/s) that does not slow
    down when responses do. Locust has no arrival-driven spawner, so every user of the pool
    starts at once and begins a task every USERS / ARRIVAL_RATE seconds whatever its answers'
    pace (`constant_pacing`, see `open_model`); arrivals hold while the pool is large enough
    (a task slower than its pace starts the next one late: the report compares asked and got)."""

    def tick(self):
        return (USERS, USERS) if self.get_run_time() < TIME else None


ARRIVAL_RATE = float(os.environ.get("HOPLAB_ARRIVAL_RATE", "0") or 0)


def open_model(namespace: dict) -> None:
    """Under the open shape, every User class in `namespace` paces its tasks so the pool
    together starts ARRIVAL_RATE tasks a second."""
    if os.environ.get("HOPLAB_SHAPE") != "open" or ARRIVAL_RATE <= 0:
        return
    for value in list(namespace.values()):
        if isinstance(value, type) and issubclass(value, User) and not value.__dict__.get("abstract", False):
            value.wait_time = constant_pacing(USERS / ARRIVAL_RATE)


SHAPES = {"steady": Steady, "step": Step, "spike": Spike, "open": Open}
