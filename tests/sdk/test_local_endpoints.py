"""LocalEndpoints: up/status/logs/down of real processes, and key rotation under load with 0 spurious 401."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sdk_helpers import eventually

from endpoints.sdk import EndpointError, LocalEndpoints

LOAD_REQUESTS = 200


def test_up_status_logs_down(shop, local: LocalEndpoints) -> None:
    assert shop["endpoint"] == "shop" and shop["traffic"] == {"blue": 90, "green": 10}
    [status] = local.status("shop")
    assert status["router_state"] == "running"
    assert [(d["deployment"], d["state"]) for d in status["deployment_states"]] == [
        ("blue", "ready"),
        ("green", "ready"),
    ]
    with local.client("shop") as client:
        assert client.invoke(json={"q": 1}, deployment="blue").status == 200
    logs = eventually(
        lambda: (lambda got: got if '"route":"/score"' in got["blue"] else None)(local.logs("shop", "blue"))
    )
    assert list(logs) == ["blue"]
    assert sorted(local.logs("shop", tail=1)) == ["blue", "green", "router"]
    with pytest.raises(EndpointError, match=r"^no log for 'nope' \(logs: blue, green, router\)$"):
        local.logs("shop", "nope")
    # Following: only what is appended from now on, line by line, until stop() (bounded by a deadline here).
    deadline = time.monotonic() + 30
    follow = local.follow_logs("shop", "green", stop=lambda: time.monotonic() > deadline, poll_s=0.1)
    with local.client("shop") as client:
        assert client.invoke(json={"f": 1}, deployment="green", request_id="follow-me").status == 200
    line = next(line for name, line in follow if name == "green" and '"request_id":"follow-me"' in line)
    assert '"route":"/score"' in line
    assert local.down("shop") == 3
    assert local.status("shop")[0]["router_state"] == "stopped"
    with pytest.raises(EndpointError, match="endpoint shop is not running"):
        local.client("shop")


def test_up_reports_a_bad_spec(local: LocalEndpoints, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "endpoint.yml").write_text("name: Bad_Name\n")
    with pytest.raises(EndpointError) as e:
        local.up(folder)
    assert str(e.value) == (
        f"{folder / 'endpoint.yml'}:1: name: got 'Bad_Name'; names are 3 to 32 characters: a letter first, then "
        "letters, digits or hyphens, and no hyphen last (they become Kubernetes names)\n"
        f"{folder}: deployments: got no deployment files; put each deployment in deployments/<name>.yml, or beside "
        "endpoint.yml as Azure's samples do (<name>-deployment.yml, or <folder>/deployment.yml: any YAML file naming "
        "endpoint_name)"
    )


def test_regenerate_primary_under_load_on_secondary_gives_no_401(shop, local: LocalEndpoints) -> None:
    before = local.credentials("shop")
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    started = threading.Event()

    def load() -> None:
        # Bounded: LOAD_REQUESTS requests, each with a 10 s timeout, loopback only.
        with httpx.Client(timeout=10, headers={"authorization": f"Bearer {before['secondaryKey']}"}) as client:
            for i in range(LOAD_REQUESTS):
                try:
                    statuses[client.post(shop["scoring_uri"], json={"i": i}).status_code] += 1
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                if i == 5:
                    started.set()

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    assert started.wait(60)
    first = local.regenerate_keys("shop", "primary")
    second = local.regenerate_keys("shop", "primary")
    thread.join(120)
    assert not thread.is_alive()
    assert errors == []
    assert statuses == Counter({200: LOAD_REQUESTS})  # not one 401 while the primary key changed twice
    assert second["secondaryKey"] == first["secondaryKey"] == before["secondaryKey"]
    assert len({before["primaryKey"], first["primaryKey"], second["primaryKey"]}) == 3
    with httpx.Client(timeout=10) as client:

        def code(key: str) -> int:
            return client.post(shop["scoring_uri"], json={}, headers={"authorization": f"Bearer {key}"}).status_code

        # regenerate_keys returns once every serving process took the new key: the old ones are refused.
        assert [code(second["primaryKey"]), code(before["primaryKey"]), code(first["primaryKey"])] == [200, 401, 401]


def test_regenerate_refuses_bad_key_name_and_token_endpoints(local: LocalEndpoints, tmp_path: Path) -> None:
    from sdk_helpers import make_project

    local.up(make_project(tmp_path / "tok", auth="aml_token"), port=0)
    with pytest.raises(EndpointError, match=r"^key: got 'tertiary'; choose primary or secondary$"):
        local.regenerate_keys("shop", "tertiary")  # type: ignore[arg-type]
    with pytest.raises(EndpointError, match=r"^endpoint shop uses aml_token; only key auth has keys to rotate$"):
        local.regenerate_keys("shop", "primary")
    token = local.credentials("shop")
    assert token["tokenType"] == "Bearer" and token["accessToken"].count(".") == 2
    with local.client("shop") as client:  # a fresh token per request from the local signing key
        assert client.invoke(json={"t": 1}).status == 200
