"""The console's actions without a browser: bad input gets a clear refusal, never a crash."""

from __future__ import annotations

import httpx

from tether.console.world import DemoWorld


async def test_actions_refuse_nonsense(world: DemoWorld) -> None:
    assert not (await world.act("fly", "owner")).done
    assert not (await world.act("pair", "mallory")).done
    assert not (await world.act("command", "owner", command="unlock")).done  # no key yet
    step = await world.act("command", "owner", wings="2")
    assert not step.done and "does not take" in step.outcome
    step = await world.act("walk", "owner", to="moon")
    assert not step.done
    assert (await world.act("pair", "owner")).done
    step = await world.act("command", "owner", command="teleport")
    assert not step.done and "teleport" in step.outcome
    assert (await world.act("walk", "owner", to="moon")).outcome == "nowhere called moon"
    assert not (await world.act("revoke", "owner")).done  # nothing shared yet
    assert not (await world.act("attack", "owner", kind="tamper")).done


async def test_http_endpoints(world: DemoWorld) -> None:
    async with httpx.AsyncClient(base_url=world.url) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "tether console" in page.text
        assert (await http.get("/console/static/console.js")).status_code == 200
        state = (await http.get("/console/state")).json()
        assert state["car"]["code"] == world.code
        assert (await http.post("/console/act", json=[1, 2])).status_code == 400
        assert (await http.post("/console/act", json={"action": 3})).status_code == 400
        bad_args = {"action": "pair", "args": {"x": 1}}
        assert (await http.post("/console/act", json=bad_args)).status_code == 400
        done = (await http.post("/console/act", json={"action": "pair", "phone": "owner"})).json()
        assert done["done"] is True
        # The console is not part of the API's documented surface.
        assert "/console/act" not in (await http.get("/openapi.json")).json()["paths"]
