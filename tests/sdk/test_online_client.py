"""OnlineEndpointClient / AsyncOnlineEndpointClient against a real local endpoint, and retries against a script."""

from __future__ import annotations

import asyncio
import email.utils

import pytest
from sdk_helpers import free_port

from endpoints.sdk import (
    AsyncOnlineEndpointClient,
    EndpointError,
    LocalEndpoints,
    OnlineEndpointClient,
    RetryPolicy,
)
from endpoints.sdk.online import parse_retry_after


def test_invoke_local_endpoint_by_name_pins_and_reports_request_id(shop, local: LocalEndpoints) -> None:
    with OnlineEndpointClient.local("shop", state_dir=local.root) as client:
        result = client.invoke(json={"x": 1}, deployment="green", request_id="my-request-1")
        assert (result.status, result.deployment, result.request_id) == (200, "green", "my-request-1")
        assert result.json() == {"deployment": "green", "body": {"x": 1}}
        unpinned = client.invoke(data=b'{"y": 2}')
        assert unpinned.ok and unpinned.deployment in ("blue", "green")
        assert unpinned.json() == {"deployment": unpinned.deployment, "body": {"y": 2}}
        assert unpinned.request_id  # made by the router when the caller sends none
        missing = client.invoke(json={}, deployment="nope")
        assert missing.status == 404
        with pytest.raises(EndpointError) as e:
            missing.raise_for_status()
        # The router answers this one itself, with a request id of its own (as every answer has).
        assert missing.request_id
        assert str(e.value) == (
            f"HTTP 404 (request id {missing.request_id}): endpoint 'shop' has no deployment named 'nope'"
            " (deployments: blue, green)"
        )
        assert e.value.status == 404


def test_local_client_by_folder_and_wrong_key(shop, local: LocalEndpoints, tmp_path) -> None:
    with OnlineEndpointClient.local(tmp_path / "shop", state_dir=local.root) as client:
        assert client.invoke(json={"a": 1}).status == 200
    with OnlineEndpointClient(shop["scoring_uri"], key="wrong") as client:
        denied = client.invoke(json={"a": 1})
    assert denied.status == 401 and denied.attempts == 1  # 401 is never retried
    with pytest.raises(EndpointError, match="no local endpoint named 'other'"):
        OnlineEndpointClient.local("other", state_dir=local.root)


def test_swagger_needs_the_key(shop, local: LocalEndpoints) -> None:
    key = local.credentials("shop")["primaryKey"]
    with OnlineEndpointClient(shop["scoring_uri"], key=key) as client:
        assert client.swagger_uri == shop["swagger_uri"]
        doc = client.swagger()
    assert doc["info"]["title"]
    with OnlineEndpointClient(shop["scoring_uri"], key="wrong") as client, pytest.raises(EndpointError) as e:
        client.swagger()
    assert e.value.status == 401


def test_async_client(shop, local: LocalEndpoints) -> None:
    key = local.credentials("shop")["secondaryKey"]

    async def main() -> list[tuple[int, str | None]]:
        async with AsyncOnlineEndpointClient(shop["scoring_uri"], key=key) as client:
            results = await asyncio.gather(*(client.invoke(json={"i": i}, deployment="blue") for i in range(5)))
            return [(r.status, r.deployment) for r in results]

    assert asyncio.run(main()) == [(200, "blue")] * 5


def test_retries_after_retry_after_then_succeeds(scripted) -> None:
    scripted.script = [(503, {"retry-after": "0"}), (429, {"retry-after": "0"})]
    with OnlineEndpointClient(scripted.url, token="t0k") as client:
        result = client.invoke(json={"n": 1})
    assert (result.status, result.attempts, result.request_id) == (200, 3, "rid-3")
    assert [s["headers"]["authorization"] for s in scripted.seen] == ["Bearer t0k"] * 3
    assert [s["body"] for s in scripted.seen] == [b'{"n": 1}'] * 3


def test_retry_budget_returns_the_refusal(scripted) -> None:
    # A Retry-After beyond the total wait budget is not waited for: the 429 comes back at once.
    scripted.script = [(429, {"retry-after": "120"})]
    with OnlineEndpointClient(scripted.url, retry=RetryPolicy(max_wait_s=30)) as client:
        result = client.invoke(json={})
    assert (result.status, result.attempts, len(scripted.seen)) == (429, 1, 1)
    # Bounded count: three refusals without Retry-After, two retries allowed -> the third refusal is returned.
    scripted.seen.clear()
    scripted.script = [(503, {}), (503, {}), (503, {}), (503, {})]
    with OnlineEndpointClient(scripted.url, retry=RetryPolicy(max_retries=2, backoff_s=0.01)) as client:
        result = client.invoke(json={})
    assert (result.status, result.attempts, len(scripted.seen)) == (503, 3, 3)


def test_credential_callable_is_called_per_attempt(scripted) -> None:
    scripted.script = [(503, {"retry-after": "0"})]
    tokens = iter(["first", "second"])
    with OnlineEndpointClient(scripted.url, credential=lambda: next(tokens)) as client:
        assert client.invoke(json={}).status == 200
    assert [s["headers"]["authorization"] for s in scripted.seen] == ["Bearer first", "Bearer second"]


def test_multipart_files(scripted, tmp_path) -> None:
    image = tmp_path / "car.png"
    image.write_bytes(b"\x89PNG fake")
    with OnlineEndpointClient(scripted.url) as client:
        result = client.invoke(files={"image": image, "meta": ("meta.json", b'{"k": 1}', "application/json")})
    assert result.status == 200
    seen = scripted.seen[0]
    assert seen["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="image"; filename="car.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG fake' in seen["body"]
    assert b'name="meta"; filename="meta.json"\r\nContent-Type: application/json\r\n\r\n{"k": 1}' in seen["body"]


def test_multipart_pairs_repeat_a_field(scripted) -> None:
    # Several files under one field (``AMLRequest.files.getlist``), as ``endpoints invoke --file`` sends them.
    with OnlineEndpointClient(scripted.url) as client:
        result = client.invoke(files=[("images", ("a.png", b"A")), ("images", ("b.png", b"B", "image/x-b"))])
    assert result.status == 200
    body = scripted.seen[0]["body"]
    assert b'name="images"; filename="a.png"\r\nContent-Type: image/png\r\n\r\nA' in body
    assert b'name="images"; filename="b.png"\r\nContent-Type: image/x-b\r\n\r\nB' in body


def test_a_timeout_is_reported_and_not_retried(scripted) -> None:
    # The request may have been scored: a timed-out attempt is never sent again.
    scripted.script = [(200, {"x-sleep": "3"})]
    with OnlineEndpointClient(scripted.url, timeout=0.2) as client, pytest.raises(EndpointError) as e:
        client.invoke(json={})
    assert str(e.value) == f"{scripted.url}: ReadTimeout: timed out (after 1 attempt(s))"
    assert len(scripted.seen) == 1


def test_connection_refused_is_retried_then_reported() -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}/score"
    with OnlineEndpointClient(uri, retry=RetryPolicy(backoff_s=0.01)) as client, pytest.raises(EndpointError) as e:
        client.invoke(json={})
    assert str(e.value).startswith(f"http://127.0.0.1:{port}/score: ConnectError: ")
    assert str(e.value).endswith("(after 4 attempt(s))")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"key": "a", "token": "b"}, "key, token, credential: give at most one", id="two-credentials"),
        pytest.param({}, "scoring_uri: got 'ftp://x/score'; an endpoint URI starts with http:// or https://", id="uri"),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    uri = "http://127.0.0.1:1/score" if kwargs else "ftp://x/score"
    with pytest.raises(EndpointError) as e:
        OnlineEndpointClient(uri, **kwargs)
    assert str(e.value) == message


def test_two_bodies_and_bad_file_part(tmp_path) -> None:
    with OnlineEndpointClient("http://127.0.0.1:1/score") as client:
        with pytest.raises(EndpointError, match=r"^json and data: give one body \(json=, data= or files=\)$"):
            client.invoke(json={}, data=b"x")
        with pytest.raises(EndpointError, match=r"^files\.img: cannot read '.*/missing.png': No such file"):
            client.invoke(files={"img": tmp_path / "missing.png"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("3", 3.0, id="seconds"),
        pytest.param(" 0 ", 0.0, id="zero"),
        pytest.param("soon", None, id="garbage"),
        pytest.param(email.utils.formatdate(1_000_030, usegmt=True), 30.0, id="http-date"),
        pytest.param(email.utils.formatdate(999_000, usegmt=True), 0.0, id="past-date"),
    ],
)
def test_parse_retry_after(value, expected) -> None:
    assert parse_retry_after(value, now=1_000_000) == expected
