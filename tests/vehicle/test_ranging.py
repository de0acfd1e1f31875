"""Secure ranging against relays, early answers and noise; zones; the hands-free policy.

The measured false-accept and false-reject rates are printed in the test summary.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from tether.protocol import ranging
from tether.protocol.commands import Command, DenialReason
from tether.protocol.ranging import Round
from tether.vehicle.hands_free import HandsFree, Reading, placed_for
from tether.vehicle.ranging import CAR_ANCHORS, Location, Zone, locate
from tether.vehicle.simulation import EarlyAnswer, Relay, SimulatedRanger

KEY = ranging.ranging_key(b"\x11" * 32)
RATES: dict[str, str] = {}  # printed by conftest's terminal summary


def where(
    x: float, y: float, *, seed: int = 1, attacker: Relay | EarlyAnswer | None = None
) -> Location | None:
    rng = random.Random(seed)
    sim = SimulatedRanger(phone=(x, y), rng=rng, attacker=attacker, secrets_source=rng.randbytes)
    return locate(sim.measure(KEY))


def at(x: float, y: float, *, seed: int = 1) -> Location:
    loc = where(x, y, seed=seed)
    assert loc is not None
    return loc


def test_honest_phone_zones_and_accuracy() -> None:
    assert at(0.1, 0.3).zone is Zone.INSIDE
    door = at(-1.9, 0.4)
    assert door.zone is Zone.DOOR and door.nearest_door == "driver door"
    assert at(0, 12).zone is Zone.AWAY
    rng = random.Random(2)
    sim = SimulatedRanger(phone=(3.0, 4.0), rng=rng, secrets_source=rng.randbytes)
    for anchor in CAR_ANCHORS:
        measured = sim.measure_anchor(KEY, anchor).distance_m
        true = math.hypot(3 - anchor.x, 4 - anchor.y)
        assert measured is not None and abs(measured - true) < 0.3


def test_owner_outside_and_friend_inside_are_told_apart() -> None:
    owner, friend = at(-1.6, 0.5, seed=3), at(0.2, -0.4, seed=4)
    assert owner.zone is Zone.DOOR and friend.zone is Zone.INSIDE
    assert placed_for(Command.START, owner) is DenialReason.RANGING_REQUIRED
    assert placed_for(Command.START, friend) is None
    assert placed_for(Command.UNLOCK, owner) is None  # at the driver door
    assert placed_for(Command.UNLOCK, at(0, 12)) is DenialReason.RANGING_REQUIRED  # away
    assert placed_for(Command.START, None) is DenialReason.RANGING_REQUIRED


def test_relays_never_give_entry_or_start() -> None:
    rng = random.Random(5)
    accepted = trials = 0
    for _ in range(600):
        distance = rng.uniform(2.5, 100.0)  # the phone is away from the car...
        angle = rng.uniform(0, 2 * math.pi)
        extra = rng.uniform(1.0, 60.0)  # ...and the relay adds at least a metre of path
        relay = Relay(extra_path_m=extra, processing_ns=rng.uniform(0, 500))
        loc = where(
            distance * math.cos(angle),
            distance * math.sin(angle),
            seed=rng.randrange(10**9),
            attacker=relay,
        )
        trials += 1
        if loc is not None and loc.zone is not Zone.AWAY:
            accepted += 1
    # A relay from 30 m with the attacker at the door: still 30 m and more.
    far = where(0, 30, attacker=Relay(extra_path_m=1.0))
    assert far is not None
    assert far.closest > 29
    RATES["relay false-accept"] = f"{accepted}/{trials}"
    assert accepted == 0


def test_early_answers_fail_at_full_strength() -> None:
    rng = random.Random(6)
    sim = SimulatedRanger(
        phone=(0, 30), rng=rng, attacker=EarlyAnswer(), secrets_source=rng.randbytes
    )
    wins = sum(sim.measure_anchor(KEY, CAR_ANCHORS[0]).ok for _ in range(3000))
    assert ranging.early_answer_success() < 2**-32
    RATES["early-answer false-accept (8-bit, 5 rounds)"] = (
        f"{wins}/3000 (bound {ranging.early_answer_success():.1e})"
    )
    assert wins == 0


def test_early_answer_rate_matches_the_bound_at_reduced_width() -> None:
    bits, rounds, trials = 2, 3, 20_000
    rng = random.Random(7)
    sim = SimulatedRanger(
        phone=(0, 30), rng=rng, attacker=EarlyAnswer(bits=bits), secrets_source=rng.randbytes
    )
    wins = sum(
        sim.measure_anchor(KEY, CAR_ANCHORS[0], bits=bits, rounds=rounds).ok for _ in range(trials)
    )
    expected = ranging.early_answer_success(bits, rounds)  # (2^-8 + (1 - 2^-8) / 4)^3 = 0.0162
    sigma = math.sqrt(expected * (1 - expected) / trials)
    RATES["early-answer success at 2 bits, 3 rounds"] = (
        f"{wins / trials:.4f} (formula {expected:.4f})"
    )
    assert abs(wins / trials - expected) < 4 * sigma


def test_noise_never_brings_a_far_phone_close_and_rarely_rejects_a_near_one() -> None:
    rng = random.Random(8)
    false_accepts = false_rejects = 0
    trials = 500
    for _ in range(trials):
        far = where(0, 10 + rng.uniform(0, 1), seed=rng.randrange(10**9))
        if far is None or far.closest <= 2.0:
            false_accepts += 1
        near = where(-1.6, 0.4, seed=rng.randrange(10**9))
        if near is None or near.zone is not Zone.DOOR:
            false_rejects += 1
    RATES["noise false-accept (10 m read as <= 2 m)"] = f"{false_accepts}/{trials}"
    RATES["false-reject (phone 0.65 m from the driver door)"] = f"{false_rejects}/{trials}"
    assert false_accepts == 0
    assert false_rejects / trials < 0.02


def test_wrong_answers_and_impossible_timing_are_refused() -> None:
    nonce = b"n" * 16
    good = [
        Round(
            challenge=c,
            answer=ranging.response(KEY, nonce, i, c),
            round_trip_ns=250_010.0,
            reply_ns=250_000.0,
        )
        for i, c in enumerate([1, 2, 3, 4, 5])
    ]
    assert ranging.verify(KEY, nonce, good).ok
    bad = [
        *good[:-1],
        Round(
            challenge=5,
            answer=(good[-1].answer + 1) % 256,
            round_trip_ns=250_010.0,
            reply_ns=250_000.0,
        ),
    ]
    assert ranging.verify(KEY, nonce, bad).reason == "wrong_answer"
    early = [
        *good[:-1],
        Round(challenge=5, answer=good[-1].answer, round_trip_ns=1.0, reply_ns=250_000.0),
    ]
    assert ranging.verify(KEY, nonce, early).reason == "impossible_timing"
    assert ranging.verify(KEY, nonce, good[:3]).reason == "wrong_round_count"
    assert ranging.verify(ranging.ranging_key(b"\x22" * 32), nonce, good).reason == "wrong_answer"


def test_locate_fails_closed() -> None:
    rng = random.Random(9)
    sim = SimulatedRanger(
        phone=(0, 1), rng=rng, attacker=EarlyAnswer(), secrets_source=rng.randbytes
    )
    assert locate(sim.measure(KEY)) is None
    assert locate({}) is None


def car(locked: bool, *, ok: bool = True) -> dict[str, Any]:
    """What the policy asks the car: whether it is locked, and whether the key may unlock."""
    return {"locked": locked, "may_unlock": lambda reading: ok}


def test_hands_free_walk_up_get_in_walk_away() -> None:
    policy = HandsFree()
    locked, t = True, 0.0
    unlocked_at = None
    for step, y in enumerate([12, 8, 5, 3, 2.2, 1.6]):  # walking toward the driver door
        loc = where(-0.95 - y, 0.4, seed=step)
        for d in policy.observe(t, [Reading(key_id="ada", location=loc)], **car(locked)):
            if d.action == "unlock":
                locked, unlocked_at = False, d.distance_m
        t += 1
    assert not locked and unlocked_at is not None and unlocked_at <= 2.0
    inside = at(-0.3, 0.4, seed=20)
    assert placed_for(Command.START, inside) is None
    lock_time = None
    for step, y in enumerate([1, 3, 6, 7, 8, 9, 10, 11]):  # walking away, one step a second
        loc = where(-0.95 - y, 0.4, seed=100 + step)
        for d in policy.observe(t, [Reading(key_id="ada", location=loc)], **car(locked)):
            if d.action == "lock":
                locked, lock_time = True, t
        t += 1
    assert locked and lock_time is not None
    # A relay from 30 m never unlocks it again.
    for step in range(5):
        loc = where(0, 30, seed=200 + step, attacker=Relay(extra_path_m=1.0))
        assert not policy.observe(t + step, [Reading(key_id="ada", location=loc)], **car(True))
    # A key the car's authority refuses never opens it, at the very door.
    door = where(-1.9, 0.4, seed=300)
    refused = policy.observe(t, [Reading(key_id="ada", location=door)], **car(True, ok=False))
    assert not [d for d in refused if d.action == "unlock"]


def test_anchors_form_a_sane_car() -> None:
    assert sum(a.door for a in CAR_ANCHORS) == 4
    with pytest.raises(StopIteration):
        next(a for a in CAR_ANCHORS if a.name == "roof")
