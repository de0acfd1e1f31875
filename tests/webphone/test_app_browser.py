"""The web phone in Chromium: served by `tether server` at /phone/, it pairs with a real car over
WebSocket, opens and closes it, keeps its key non-extractable in IndexedDB, and still opens the
car after a reload (the fast transaction with the stored persistent key)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.integration.procs import CLI, Agent, tether, tether_json
from tests.integration.test_cloud_cli import ServerProc

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)"
)
NODE_MODULES = Path(__file__).parents[2] / "node_modules"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2}
#: TETHER_SCREENSHOTS=docs/screenshots writes the README's pictures of the app at phone width.
SHOTS = os.environ.get("TETHER_SCREENSHOTS", "")


async def phone(browser: Browser) -> Page:
    """A phone of its own: a fresh browser context (its own IndexedDB) at phone width."""
    return await (await browser.new_context(**PHONE)).new_page()  # type: ignore[arg-type]


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / f"webphone-{name}.png"), full_page=False)


async def show_qr(sender: Page, qr: str, receiver: Page, tmp_path: Path) -> None:
    """``receiver`` reads the QR code on ``sender``'s screen, as a picture taken of it."""
    picture = tmp_path / f"{qr}.png"
    await sender.get_by_test_id(qr).screenshot(path=str(picture))
    await receiver.get_by_test_id("scan-file").set_input_files(str(picture))


async def pair(page: Page, address: str, code: str, car: str) -> None:
    """Pair the page's phone with the car at ``address``, as a person types it in."""
    await page.get_by_test_id("address").fill(address)
    await page.get_by_test_id("code").fill(code)
    await page.get_by_test_id("pair").click()
    await expect(page.get_by_test_id("pair-status")).to_have_text(
        f"Paired with {car}.", timeout=20_000
    )


CACHED_LIBRARIES = """async () => {
  const cache = await caches.open("tether-phone-v2");
  const names = (await cache.keys()).map((r) => new URL(r.url).pathname);
  return ["/phone/", "/phone/vendor/cborg/cborg.js", "/phone/qr.js"].every((n) => names.includes(n))
    && names.some((n) => n.startsWith("/phone/vendor/@noble/curves/"));
}"""


KEY_IS_PRIVATE = """async () => {
  const db = await new Promise((ok, no) => {
    const r = indexedDB.open("tether-phone"); r.onsuccess = () => ok(r.result); r.onerror = no;
  });
  const cars = await new Promise((ok) => {
    const r = db.transaction("cars").objectStore("cars").getAll(); r.onsuccess = () => ok(r.result);
  });
  const key = cars[0].endpoint.privateKey;
  return [cars.length, key.extractable, key.type, key.algorithm.namedCurve];
}"""


@pytest.mark.skipif(not NODE_MODULES.is_dir(), reason="needs `npm ci` (scripts/check runs it)")
async def test_the_web_phone_pairs_and_opens_the_car(tmp_path: Path) -> None:
    car = tmp_path / "car"
    tether("vehicle", "init", "--dir", str(car), "--name", "Web car")
    code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
    agent = Agent(car, listen=("ws://127.0.0.1:0",))
    server = ServerProc(tmp_path / "server")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = await phone(browser)
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            try:
                await page.goto(f"{server.url}/phone/")
                await expect(page.get_by_test_id("no-cars")).to_be_visible()
                await page.get_by_test_id("phone-name").fill("Ada's browser")
                await pair(page, agent.address, code, "Web car")
                await expect(page.get_by_test_id("car-name")).to_have_text("Web car")

                outcome = page.get_by_test_id("outcome")
                await page.get_by_test_id("unlock").click()
                await expect(outcome).to_have_text("unlock: done (standard)", timeout=20_000)
                await page.get_by_test_id("lock").click()
                await expect(outcome).to_have_text("lock: done (fast)", timeout=20_000)
                count, extractable, kind, curve = await page.evaluate(KEY_IS_PRIVATE)
                assert (count, extractable, kind, curve) == (1, False, "private", "P-256")

                await page.reload()  # the key is still here, and still opens the car
                await expect(page.get_by_test_id("car-name")).to_have_text("Web car")
                await page.get_by_test_id("unlock").click()
                await expect(outcome).to_have_text("unlock: done (fast)", timeout=20_000)

                # The vault: contacts and a seat, read by the car's screen at start, by consent.
                cards = tmp_path / "people.vcf"
                cards.write_text(
                    "BEGIN:VCARD\nVERSION:4.0\nFN:CANARY-Ada Lovelace\nTEL:+49 89 1\nEND:VCARD\n"
                )
                await page.get_by_test_id("import").set_input_files(str(cards))
                await expect(page.get_by_test_id("data-status")).to_have_text(
                    "Imported 1 contacts."
                )
                await page.get_by_test_id("seat").fill("618")
                await page.get_by_test_id("save-profile").click()
                await expect(page.get_by_test_id("data-status")).to_have_text("Profile saved.")
                screen = subprocess.Popen(
                    [*CLI, "vehicle", "headunit", "--dir", str(car), "--json", "--seconds", "30"],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                await asyncio.sleep(1.0)  # the viewer is connected
                await page.get_by_test_id("start").click()
                await expect(outcome).to_have_text("start: done (standard)", timeout=20_000)
                log = page.get_by_test_id("disclosures")
                await expect(log).to_contain_text("contacts disclosed")
                await expect(log).to_contain_text("profile disclosed")
                await page.get_by_test_id("consent-contacts").select_option("ask")
                page.on("dialog", lambda d: None)
                await page.get_by_test_id("start").click()  # asked now: Deny
                await page.get_by_test_id("ask-deny").click()
                await expect(outcome).to_have_text("start: done (standard)", timeout=20_000)
                await expect(log).to_contain_text("contacts refused")
                screen.terminate()
                shown = [
                    json.loads(line) for line in screen.communicate(timeout=10)[0].splitlines()
                ]
                screens = [e for e in shown if e["event"] == "shown"]
                assert screens[0]["data"]["contacts"][0]["name"] == "CANARY-Ada Lovelace"
                assert screens[0]["data"]["profile"] == {"seat": {"position": 618}}
                assert "contacts" in screens[-1]["denied"]
                assert problems == [], problems
                await page.evaluate("window.scrollTo(0, 0)")
                await shot(page, "car")

                # At the car with no network but the car itself: the app comes from its worker.
                await page.wait_for_function(CACHED_LIBRARIES, timeout=20_000)
                server.stop()
                await page.reload()
                await expect(page.get_by_test_id("car-name")).to_have_text("Web car")
                await page.get_by_test_id("unlock").click()
                await expect(outcome).to_have_text("unlock: done (fast)", timeout=20_000)
            finally:
                await browser.close()
        audit = tether_json("vehicle", "audit", "--dir", str(car))["entries"]
        done = [(e["command"], e["result"], e["detail"]) for e in audit]
        assert ("unlock", "ok", "standard") in done and ("lock", "ok", "fast") in done
        keys = tether_json("vehicle", "status", "--dir", str(car))["keys"]
        assert [k["name"] for k in keys] == ["Ada's browser"]
        disk = b"".join(p.read_bytes() for p in car.rglob("*") if p.is_file())
        assert b"CANARY" not in disk  # the car kept nothing of what it was shown
    finally:
        server.stop()
        agent.stop()


@pytest.mark.skipif(not NODE_MODULES.is_dir(), reason="needs `npm ci` (scripts/check runs it)")
async def test_the_web_phone_sends_remote_commands_through_the_server(tmp_path: Path) -> None:
    car = tmp_path / "car"
    tether("vehicle", "init", "--dir", str(car), "--name", "Far car")
    code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
    server = ServerProc(tmp_path / "server")
    agent = Agent(car, "--server", server.url, listen=("ws://127.0.0.1:0",))
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = await phone(browser)
            try:
                await page.goto(f"{server.url}/phone/")
                await pair(page, agent.address, code, "Far car")
                await page.get_by_test_id("remote").check()
                outcome = page.get_by_test_id("outcome")
                for _ in range(40):  # until the car has told the server about its new owner
                    await page.get_by_test_id("lock").click()
                    await expect(outcome).not_to_have_text("lock…", timeout=20_000)
                    if await outcome.text_content() == "lock: done (remote)":
                        break
                    await asyncio.sleep(0.5)
                await expect(outcome).to_have_text("lock: done (remote)")
                await page.get_by_test_id("start").click()  # never remotely: the driver is away
                await expect(outcome).to_contain_text("start refused (remote_not_allowed)")
            finally:
                await browser.close()
        audit = tether_json("vehicle", "audit", "--dir", str(car))["entries"]
        assert ("lock", "ok", "remote") in [(e["command"], e["result"], e["detail"]) for e in audit]
    finally:
        agent.stop()
        server.stop()


@pytest.mark.skipif(not NODE_MODULES.is_dir(), reason="needs `npm ci` (scripts/check runs it)")
async def test_an_owner_shares_a_key_with_a_friends_browser(tmp_path: Path) -> None:
    """Ada shares by QR codes with Bea, who may share on; Bea gives Cy less; revoking Bea ends both."""
    car = tmp_path / "car"
    tether("vehicle", "init", "--dir", str(car), "--name", "Shared car")
    code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
    agent = Agent(car, listen=("ws://127.0.0.1:0",))
    server = ServerProc(tmp_path / "server")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            ada, bea, cy = await phone(browser), await phone(browser), await phone(browser)
            try:
                await ada.goto(f"{server.url}/phone/")
                await pair(ada, agent.address, code, "Shared car")

                await bea.goto(f"{server.url}/phone/")
                await bea.get_by_test_id("ask-key").click()
                await expect(bea.get_by_test_id("request-link")).to_have_value(
                    re.compile("^tether://key-request/")
                )
                await show_qr(bea, "request-qr", ada, tmp_path)  # Ada scans Bea's screen
                await expect(ada.get_by_test_id("scan-status")).to_contain_text("A key request")
                assert (await ada.get_by_test_id("share-request").input_value()).startswith(
                    "tether://key-request/"
                )
                await ada.get_by_test_id("right-share").check()
                await ada.get_by_test_id("share-button").click()
                grant = ada.get_by_test_id("share-link")
                await expect(grant).to_have_value(re.compile("^tether://grant/"))
                await expect(ada.get_by_test_id("outcome")).to_have_text("")  # no command sent
                await ada.get_by_test_id("share-qr").scroll_into_view_if_needed()
                await shot(ada, "share")

                good = await grant.input_value()
                at = len("tether://grant/") + 80  # inside the signed grant
                tampered = good[:at] + ("B" if good[at] == "A" else "A") + good[at + 1 :]
                await bea.get_by_test_id("grant-link").fill(tampered)
                await bea.get_by_test_id("accept").click()
                friend = bea.get_by_test_id("friend-status")
                await expect(friend).to_contain_text("Not accepted")
                await show_qr(ada, "share-qr", bea, tmp_path)  # and Bea scans Ada's
                await expect(friend).to_have_text(
                    "Accepted a key to Shared car: lock, share, unlock."
                )

                outcome = bea.get_by_test_id("outcome")
                await bea.get_by_test_id("unlock").click()  # first use: the credential travels
                await expect(outcome).to_have_text("unlock: done (standard)", timeout=20_000)
                await bea.get_by_test_id("lock").click()
                await expect(outcome).to_have_text("lock: done (fast)", timeout=20_000)
                await bea.get_by_test_id("start").click()  # she may not drive
                await expect(outcome).to_contain_text("start refused (no_right)", timeout=20_000)

                # Bea holds share: she hands Cy a narrower key (a sub-grant, unlock only).
                await cy.goto(f"{server.url}/phone/")
                await cy.get_by_test_id("ask-key").click()
                await bea.get_by_test_id("share").locator("summary").click()
                assert await bea.get_by_test_id("right-drive").is_disabled()  # not hers to give
                await bea.get_by_test_id("share-request").fill(
                    await cy.get_by_test_id("request-link").input_value()
                )
                await bea.get_by_test_id("share").get_by_label("lock", exact=True).uncheck()
                await bea.get_by_test_id("share-button").click()
                await expect(bea.get_by_test_id("share-status")).to_contain_text("unlock")
                await cy.get_by_test_id("grant-link").fill(
                    await bea.get_by_test_id("share-link").input_value()
                )
                await cy.get_by_test_id("accept").click()
                await expect(cy.get_by_test_id("friend-status")).to_have_text(
                    "Accepted a key to Shared car: unlock."
                )
                cy_outcome = cy.get_by_test_id("outcome")
                await cy.get_by_test_id("unlock").click()  # her credential: Ada's grant, then Bea's
                await expect(cy_outcome).to_have_text("unlock: done (standard)", timeout=20_000)
                await cy.get_by_test_id("lock").click()
                await expect(cy_outcome).to_contain_text("lock refused (no_right)", timeout=20_000)

                # Ada sees the key she gave and revokes it: Bea's phone and Cy's, given by Bea, fail.
                issued = ada.get_by_test_id("issued")
                await expect(issued).to_contain_text("a friend: lock, share, unlock until")
                await ada.get_by_test_id("revoke-0").click()
                await expect(ada.get_by_test_id("share-status")).to_have_text(
                    "Revoked a friend's key.", timeout=20_000
                )
                await expect(issued).to_contain_text("(revoked)")
                await bea.get_by_test_id("unlock").click()
                await expect(outcome).to_contain_text("unlock failed", timeout=20_000)
                await cy.get_by_test_id("unlock").click()
                await expect(cy_outcome).to_contain_text("unlock failed", timeout=20_000)
            finally:
                await browser.close()
        keys = tether_json("vehicle", "status", "--dir", str(car))["keys"]
        assert sorted((k["role"], k["revoked"]) for k in keys) == [
            ("delegate", True),
            ("friend", True),
            ("owner", False),
        ]
    finally:
        server.stop()
        agent.stop()


@pytest.mark.skipif(not NODE_MODULES.is_dir(), reason="needs `npm ci` (scripts/check runs it)")
async def test_a_friend_answers_an_invitation_through_the_server(tmp_path: Path) -> None:
    car = tmp_path / "car"
    tether("vehicle", "init", "--dir", str(car), "--name", "Invited car")
    code = tether_json("vehicle", "pairing-code", "--dir", str(car))["code"]
    server = ServerProc(tmp_path / "server")
    agent = Agent(car, "--server", server.url, listen=("ws://127.0.0.1:0",))
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            ada, bea = await phone(browser), await phone(browser)
            try:
                await ada.goto(f"{server.url}/phone/")
                await pair(ada, agent.address, code, "Invited car")
                await ada.get_by_test_id("share").locator("summary").click()
                status = ada.get_by_test_id("share-status")
                for _ in range(40):  # until the car has told the server about its new owner
                    await ada.get_by_test_id("invite").click()
                    await expect(status).not_to_have_text("", timeout=10_000)
                    if "Send the invitation" in (await status.text_content() or ""):
                        break
                    await asyncio.sleep(0.5)
                invitation = await ada.get_by_test_id("invite-link").input_value()
                assert invitation.startswith("tether://invite/")

                await bea.goto(f"{server.url}/phone/")
                await show_qr(ada, "invite-qr", bea, tmp_path)  # Bea scans the invitation
                friend = bea.get_by_test_id("friend-status")
                await expect(friend).to_have_text(
                    "Requested: once the owner grants it, fetch your key."
                )
                await bea.get_by_test_id("fetch-key").click()
                await expect(friend).to_have_text("No key is waiting yet.")

                await ada.get_by_test_id("grant-pending").click()
                await expect(status).to_have_text("Granted 1 request.", timeout=20_000)
                await bea.get_by_test_id("fetch-key").click()
                await expect(friend).to_have_text("Accepted a key to Invited car: lock, unlock.")
                await bea.get_by_test_id("unlock").click()
                await expect(bea.get_by_test_id("outcome")).to_have_text(
                    "unlock: done (standard)", timeout=20_000
                )

                # Ada is away: her revocation goes through the server, and counts only with the
                # car's signed receipt.
                await ada.get_by_test_id("remote").check()
                await ada.get_by_test_id("revoke-0").click()
                await expect(status).to_have_text(
                    "Revoked a friend's key (the car's signed receipt).", timeout=30_000
                )
                await expect(ada.get_by_test_id("issued")).to_contain_text("(revoked)")
                await bea.get_by_test_id("unlock").click()
                await expect(bea.get_by_test_id("outcome")).to_contain_text(
                    "unlock failed", timeout=20_000
                )
            finally:
                await browser.close()
    finally:
        agent.stop()
        server.stop()
