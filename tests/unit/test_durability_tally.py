"""The durability benchmark's accounting (bench/bench_durability.py, `make bench-durability`):
what Locust saw acknowledged, what the database holds and what the mailbox holds, turned into
lost orders, missing and doubled confirmations. No lab: the figures are given."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_durability import ADDRESS, mail_order_id, read_outcomes, tally, while_down  # noqa: E402

RUN = "buyer+durability-0a1b2c3d@example.test"


def line(status, order=None, email=RUN, t=1.0):
    return json.dumps({"t": t, "email": email, "status": status, "order": order, "served_by": "web1"})


def test_every_acknowledged_order_stored_and_mailed_once_passes():
    verdict = tally([1, 2, 3], [1, 2, 3], [3, 1, 2])
    assert verdict.ok, verdict.problems
    assert (verdict.acknowledged, verdict.stored, verdict.mailed, verdict.duplicates, verdict.lost) == (3, 3, 3, 0, [])


def test_an_acknowledged_order_missing_from_the_database_is_lost():
    verdict = tally([1, 2, 3], [1, 3], [1, 3])
    assert not verdict.ok
    assert verdict.lost == [2]
    assert any("not in the database: 2" in p for p in verdict.problems)


def test_a_stored_order_without_a_confirmation_fails():
    verdict = tally([1, 2], [1, 2], [1])
    assert not verdict.ok and verdict.lost == []
    assert verdict.unmailed == [2] and verdict.mailed == 1
    assert any("no confirmation: 2" in p for p in verdict.problems)


def test_a_confirmation_sent_twice_is_a_duplicate():
    verdict = tally([1, 2], [1, 2], [1, 2, 2, 2])
    assert not verdict.ok
    assert verdict.duplicates == 1 and verdict.extra_mails == 2 and verdict.doubled == {2: 3}
    assert verdict.mailed == 2
    assert any("more than once (2 extra" in p for p in verdict.problems)


def test_a_stored_order_nobody_saw_acknowledged_is_fine_once_mailed():
    # the order committed, its answer was lost on the way (a replica killed mid-answer)
    verdict = tally([1], [1, 2], [1, 2])
    assert verdict.ok, verdict.problems
    assert verdict.stored_unacknowledged == 1 and verdict.acknowledged == 1 and verdict.stored == 2


def test_a_stored_unacknowledged_order_still_needs_its_mail():
    verdict = tally([1], [1, 2], [1])
    assert not verdict.ok and verdict.unmailed == [2]


def test_a_mail_for_an_order_the_database_does_not_hold_fails():
    verdict = tally([1], [1], [1, 7])
    assert not verdict.ok and verdict.stray_mails == [7]


def test_a_mail_naming_no_order_fails():
    verdict = tally([1], [1], [1, None])
    assert not verdict.ok
    assert any("name no order" in p for p in verdict.problems)


def test_one_id_acknowledged_twice_fails():
    verdict = tally([1, 1], [1], [1])
    assert not verdict.ok and verdict.acknowledged_twice == [1]


def test_a_2xx_without_an_order_id_fails_and_counts_as_acknowledged():
    verdict = tally([1], [1], [1], without_id=2)
    assert not verdict.ok and verdict.acknowledged == 3


def test_nothing_at_all_is_not_a_failure_of_the_accounting():
    # an empty run is the benchmark's to refuse (no kills seen, no orders), not the tally's
    assert tally([], [], []).ok


def test_every_problem_is_reported_at_once():
    verdict = tally([1, 2, 3], [1, 3, 4], [1, 1, 9])
    assert verdict.lost == [2] and verdict.unmailed == [3, 4] and verdict.doubled == {1: 2}
    assert verdict.stray_mails == [9] and len(verdict.problems) == 4


def test_long_id_lists_are_shortened_in_the_message():
    verdict = tally(range(1, 31), [], [])
    assert len(verdict.lost) == 30
    assert "(and 20 more)" in verdict.problems[0]


def test_outcomes_keep_only_2xx_with_an_id_as_acknowledged():
    outcomes = read_outcomes([line(201, 5), line(503), line(0), "", line(502), line(201, 6), line(200)])
    assert outcomes.acknowledged == [5, 6]
    assert outcomes.without_id == 1
    assert outcomes.statuses == {201: 2, 503: 1, 0: 1, 502: 1, 200: 1}
    assert outcomes.addresses == [RUN]


@pytest.mark.parametrize("order", [True, 0, -3, "7", 1.5])
def test_outcomes_refuse_an_id_that_is_not_a_positive_integer(order):
    assert read_outcomes([line(201, order)]).without_id == 1


@pytest.mark.parametrize("bad", ["not json", json.dumps({"status": 201}), json.dumps({"email": RUN, "order": 1}),
                                 json.dumps({"email": RUN, "status": "x", "order": 1})])
def test_a_broken_outcome_line_is_an_error_naming_the_line(bad):
    with pytest.raises(ValueError, match="line 2: not an order outcome"):
        read_outcomes([line(201, 1), bad])


def test_outcomes_list_every_address_seen():
    other = "buyer+durability-ffffffff@example.test"
    assert read_outcomes([line(201, 1), line(201, 2, other)]).addresses == [RUN, other]


@pytest.mark.parametrize("message_id, subject, order", [
    ("<order-42.outbox-40@example.test>", "Your order 42 at example.test", 42),
    ("<order-42.outbox-40@example.test>", "", 42),
    ("", "Your order 17 at example.test", 17),
    ("<something@else>", "hello", None),
    ("", "", None),
])
def test_a_mail_names_its_order_by_message_id_or_subject(message_id, subject, order):
    assert mail_order_id(message_id, subject) == order


@pytest.mark.parametrize("address, ok", [
    (RUN, True),
    ("buyer@example.test", False),
    ("buyer+durability-0a1b2c3d@example.test'; DROP TABLE orders;--", False),
    ("buyer+durability-0A1B2C3D@example.test", False),
])
def test_only_the_locustfiles_run_address_is_taken(address, ok):
    assert bool(ADDRESS.fullmatch(address)) is ok


def test_posts_while_a_node_was_down_are_those_between_its_kill_and_its_return():
    outcomes = read_outcomes([line(201, 1, t=9.9), line(503, t=10.0), line(0, t=12.5), line(201, 2, t=14.0),
                              line(201, 3, t=14.1)])
    assert while_down(10.0, 4.0, outcomes.times) == {503: 1, 0: 1, 201: 1}
    assert while_down(10.0, None, outcomes.times) == {503: 1, 0: 1, 201: 2}  # never back: to the end
