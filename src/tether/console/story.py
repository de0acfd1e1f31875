"""The demo's story as data: each step is a console action and what the car must do with it.

`tether demo --script` plays it unattended (and exits 0 only if every step behaved); the browser
test clicks the same buttons in the same order.
"""

from __future__ import annotations

import dataclasses

from tether.console.world import DemoWorld, Step


@dataclasses.dataclass(frozen=True, slots=True)
class Beat:
    """One step of the story: who does what, and whether the car should do it."""

    label: str
    action: str
    phone: str
    args: tuple[tuple[str, str], ...] = ()
    done: bool = True
    says: str = ""  # a phrase the outcome must contain


STORY = (
    Beat("Ada pairs her phone with the code on the dashboard", "pair", "owner"),
    Beat(
        "Ada unlocks (the first time a standard transaction: ECDH + signatures)",
        "command",
        "owner",
        (("command", "unlock"),),
        says="done",
    ),
    Beat(
        "Ada locks (fast transaction: MACs only)",
        "command",
        "owner",
        (("command", "lock"),),
        says="fast",
    ),
    Beat(
        "Ada starts; the head unit reads her profile from her phone first",
        "command",
        "owner",
        (("command", "start"),),
        says="standard",
    ),
    Beat(
        "Ada stops the car; the head unit forgets her data",
        "command",
        "owner",
        (("command", "stop"),),
    ),
    Beat(
        "An eavesdropper replays Ada's first unlock",
        "attack",
        "owner",
        (("kind", "replay"),),
        done=False,
        says="refused",
    ),
    Beat(
        "Ada shares unlock and lock with Bea through the cloud",
        "share",
        "owner",
        (("rights", "unlock,lock"),),
    ),
    Beat("Bea unlocks (first use enrols her key)", "command", "friend", (("command", "unlock"),)),
    Beat(
        "Bea tries to start the car",
        "command",
        "friend",
        (("command", "start"),),
        done=False,
        says="no_right",
    ),
    Beat(
        "Someone tampers with Bea's grant",
        "attack",
        "owner",
        (("kind", "tamper"),),
        done=False,
        says="refused",
    ),
    Beat("Ada, far away, revokes Bea's grant through the cloud", "revoke", "owner", says="applied"),
    Beat(
        "Bea tries to unlock again",
        "command",
        "friend",
        (("command", "unlock"),),
        done=False,
        says="refused",
    ),
    Beat(
        "Ada locks the car remotely (signed by her phone, answered by the car)",
        "remote",
        "owner",
        (("command", "lock"),),
    ),
    Beat(
        "Ada walks up with her phone in her pocket",
        "walk",
        "owner",
        (("to", "door"),),
        says="unlocked by itself",
    ),
    Beat("Ada gets in and presses start", "walk", "owner", (("to", "inside"),)),
    Beat("Ada walks away", "walk", "owner", (("to", "away"),), says="locked by itself"),
    Beat(
        "Thieves relay Ada's phone from 30 m",
        "attack",
        "owner",
        (("kind", "relay"),),
        done=False,
        says="refused",
    ),
)


def behaved(beat: Beat, step: Step) -> bool:
    return step.done == beat.done and beat.says in step.outcome


async def play(world: DemoWorld) -> list[tuple[Beat, Step, bool]]:
    """Play every beat in order; the outcomes and whether each behaved."""
    results = []
    for beat in STORY:
        step = await world.act(beat.action, beat.phone, **dict(beat.args))
        results.append((beat, step, behaved(beat, step)))
    return results
