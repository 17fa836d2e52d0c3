"""Load shapes, chosen by name (`hoplab load --shape NAME`). Each scales to the run's users
(HOPLAB_USERS), spawn rate (HOPLAB_RATE) and duration (HOPLAB_TIME, seconds), and ends by
itself at the time bound."""

import os

from locust import LoadTestShape

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


SHAPES = {"steady": Steady, "step": Step, "spike": Spike}
