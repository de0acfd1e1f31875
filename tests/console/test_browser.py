"""The console in a real browser (Debian's Chromium, driven by Playwright): click through the story.

pair → unlock → share → friend unlock → friend start refused → revoke → friend refused → relay
refused, asserting what the page shows at each step, with screenshots (docs/screenshots when
TETHER_SCREENSHOTS names a folder; the README shows two of them); and Bea answering the head
unit's questions on the page while her start waits for them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from tether.console.world import DemoWorld

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)"
)
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def click(page: Page, testid: str) -> None:
    await page.get_by_test_id(testid).click()
    await expect(page.locator("body")).to_have_attribute("data-busy", "0", timeout=20_000)


async def last_step(page: Page, text: str) -> None:
    await expect(page.get_by_test_id("steps").locator("li").last).to_contain_text(text)


async def dots_apart(page: Page) -> None:
    """Ada's and Bea's dots never cover each other, wherever each one stands."""
    await page.wait_for_timeout(700)  # the dots glide (.6 s)
    a = await page.locator("#phone-owner circle").bounding_box()
    b = await page.locator("#phone-friend circle").bounding_box()
    assert a is not None and b is not None
    apart = (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )
    assert apart, f"Ada's dot {a} and Bea's dot {b} overlap"


def _luminance(rgb: str) -> float:
    channels = [int(c) / 255 for c in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


async def hover_contrast(page: Page, testid: str) -> float:
    """The WCAG contrast ratio of a button's text on its background while the pointer is on it."""
    await page.get_by_test_id(testid).hover()
    await page.wait_for_timeout(100)
    fg, bg = await page.get_by_test_id(testid).evaluate(
        "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]"
    )
    light, dark = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
async def test_story_in_the_browser(world: DemoWorld, tmp_path: Path, width: int) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = await browser.new_page(viewport={"width": width, "height": 1000})
        try:
            await page.goto(world.url)
            await expect(page.get_by_test_id("connection")).to_have_text("live")
            await expect(page.get_by_test_id("pairing-code")).to_contain_text(world.code)
            await expect(page.get_by_test_id("car-lock")).to_have_text("locked")

            await click(page, "owner-pair")
            await expect(page.get_by_test_id("owner-keys")).to_contain_text("Demo car")
            await expect(page.get_by_test_id("pairing-code")).to_be_hidden()

            await click(page, "owner-unlock")
            await last_step(page, "Ada: unlock — done (standard)")
            await expect(page.get_by_test_id("car-lock")).to_have_text("unlocked")

            await click(page, "owner-start")  # the head unit fills from Ada's phone
            await expect(page.get_by_test_id("car-ignition")).to_have_text("on")
            await expect(page.get_by_test_id("audit")).to_contain_text("start")
            await page.screenshot(path=str(shots / "console-started.png"), full_page=True)
            await click(page, "owner-stop")
            await expect(page.get_by_test_id("headunit")).to_contain_text("forgotten")

            await click(page, "owner-share")
            await expect(page.get_by_test_id("friend-keys")).to_contain_text("lock, unlock")
            await click(page, "friend-unlock")
            await last_step(page, "Bea: unlock — done")
            await click(page, "friend-start")
            await last_step(page, "Bea: start — refused (no_right")
            await expect(page.get_by_test_id("car-ignition")).to_have_text("off")

            await click(page, "owner-revoke")
            await last_step(page, "applied; the car signed a receipt")
            await click(page, "friend-unlock")
            await last_step(page, "Bea: unlock — refused by the car (unknown_key)")
            await expect(page.get_by_test_id("friend-keys")).to_contain_text("revoked")

            await click(page, "attack-relay")
            await expect(page.get_by_test_id("attacks")).to_contain_text(
                "relay from 30 m — refused"
            )
            await click(page, "attack-replay")
            await expect(page.get_by_test_id("attacks")).to_contain_text(
                "replay a recorded unlock — refused"
            )
            await expect(page.get_by_test_id("audit")).to_contain_text("unknown_key")
            for attack in ("attack-replay", "attack-relay", "attack-tamper"):
                assert await hover_contrast(page, attack) >= 4.5, f"{attack} unreadable on hover"

            # Shared again after the revoke: Bea holds one working key, not a second dead one.
            await click(page, "owner-share")
            keys = page.get_by_test_id("friend-keys").locator("li")
            await expect(keys).to_have_count(1)
            await expect(keys).to_contain_text("active")
            await click(page, "friend-unlock")
            await last_step(page, "Bea: unlock — done")

            # Where the dots stand: both far, Ada away, Ada at the door with Bea far.
            await dots_apart(page)
            await click(page, "owner-walk-away")
            await dots_apart(page)
            await click(page, "owner-walk-door")
            await dots_apart(page)

            # Step numbers from 10 on show every digit (text, inside the list's box).
            tenth = page.get_by_test_id("steps").locator("li .n").nth(9)
            await expect(tenth).to_have_text("10.")
            clipped = await tenth.evaluate(
                "n => n.getBoundingClientRect().left < n.closest('ol').getBoundingClientRect().left"
            )
            assert not clipped, "the step number is cut off on the left"
            # The audit table fits its box at this width: no sideways scrolling.
            wide = await page.locator(".audit .scroll").evaluate(
                "b => b.scrollWidth - b.clientWidth"
            )
            assert wide <= 0, f"the audit table is {wide} px wider than its box"
            # Everything fits the screen's width (wide tables scroll inside their own box).
            overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
            assert overflow <= 0, f"the page is {overflow} px wider than a {width} px screen"
            await page.screenshot(path=str(shots / "console-attacks.png"), full_page=True)
        finally:
            await browser.close()
    keep = os.environ.get("TETHER_SCREENSHOTS")
    if keep and width == 1280:
        for shot in shots.iterdir():
            shutil.copy(shot, Path(keep) / shot.name)
    assert sorted(p.name for p in shots.iterdir()) == ["console-attacks.png", "console-started.png"]


async def test_bea_answers_the_head_units_questions_while_her_start_waits(
    world: DemoWorld,
) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            await page.goto(world.url)
            await expect(page.get_by_test_id("connection")).to_have_text("live")
            await click(page, "owner-pair")
            await page.locator("input[name=right][value=drive]").check()
            await click(page, "owner-share")
            await expect(page.get_by_test_id("friend-keys")).to_contain_text("drive")

            # Her start waits on her answer: the page stays busy, but the prompts take clicks.
            await page.get_by_test_id("friend-start").click()
            prompts = page.get_by_test_id("friend-prompts").locator(".prompt.live")
            await expect(prompts).to_have_count(1)  # one question, three categories
            await expect(prompts.locator(".ask")).to_have_count(3)
            await expect(page.locator("body")).to_have_attribute("data-busy", "1")
            # The page says why the other buttons wait, whose answer it waits for and how long.
            waiting = page.get_by_test_id("waiting")
            await expect(waiting).to_be_visible()
            await expect(waiting).to_contain_text("asks Bea for profile, contacts, calendar")
            await expect(waiting).to_contain_text(re.compile(r"\(\d+ s left; no answer means no\)"))
            await expect(page.get_by_test_id("owner-unlock")).to_be_disabled()
            await expect(page.get_by_test_id("owner-unlock")).to_have_attribute(
                "title", re.compile("waits")
            )
            for category, decision in (
                ("profile", "allow"),
                ("contacts", "allow"),
                ("calendar", "deny"),
            ):
                await page.locator(
                    f'[data-testid="friend-prompts"] button[data-category="{category}"]'
                    f'[data-decision="{decision}"]'
                ).click()
            await expect(page.locator("body")).to_have_attribute("data-busy", "0", timeout=20_000)
            await last_step(page, "Bea: start — done")
            await expect(waiting).to_be_hidden()
            await expect(page.get_by_test_id("headunit")).to_contain_text("Hello Bea")
            await expect(page.get_by_test_id("friend-prompts").locator(".prompt")).to_have_count(0)
        finally:
            await browser.close()
