"""OpenTelemetry spans of the production layer: the real frontend over a real socket, an in-process exporter."""

from __future__ import annotations

import pytest
from frontend_serve import PRIMARY
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from serving.frontend.tracing import tracing_from_env

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # exported as each span ends
    return provider


def _summary(span) -> tuple:
    parent = span.parent
    return (
        span.name,
        span.kind,
        f"{span.context.trace_id:032x}",
        f"{parent.span_id:016x}" if parent is not None else None,
        dict(span.attributes),
        span.status.status_code,
    )


def test_a_span_per_request_continuing_the_callers_trace(served, client, keys_dir, exporter):
    with served(tracer_provider=_provider(exporter), auth_mode="key", keys_dir=keys_dir, max_body_bytes=100) as s:
        auth = {"authorization": f"Bearer {PRIMARY}"}
        traced = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
        ok = client.post(s.url + "/score", json={}, headers={**auth, **traced, "x-request-id": "a"})
        assert ok.status_code == 200
        assert client.post(s.url + "/score", json={}, headers={**traced, "x-request-id": "b"}).status_code == 401
        big = client.post(s.url + "/score", content=b"x" * 101, headers={**auth, **traced, "x-request-id": "c"})
        assert big.status_code == 413
        failed = {**auth, **traced, "x-request-id": "d", "x-endpoints-mirror": "1"}
        assert client.post(s.url + "/score", json={"fail": True}, headers=failed).status_code == 424
        assert client.post(s.url + "/score", json={}, headers={**auth, "x-request-id": "e"}).status_code == 200
        assert client.get(s.url + "/nowhere", headers={**auth, "x-request-id": "f"}).status_code == 404
    spans = exporter.get_finished_spans()
    server, unset = SpanKind.SERVER, StatusCode.UNSET

    def attrs(method: str, route: str, status: int, rid: str, **more: object) -> dict:
        return {
            "http.request.method": method,
            "http.route": route,
            **more,
            "http.response.status_code": status,
            "endpoints.request_id": rid,
        }

    assert [_summary(span) for span in spans[:4]] == [
        ("POST /score", server, TRACE, PARENT, attrs("POST", "/score", 200, "a"), unset),
        (
            "POST /score",
            server,
            TRACE,
            PARENT,
            {**attrs("POST", "/score", 401, "b"), "endpoints.reason": "unauthorized"},
            unset,
        ),
        (
            "POST /score",
            server,
            TRACE,
            PARENT,
            {**attrs("POST", "/score", 413, "c"), "endpoints.reason": "body_too_large"},
            unset,
        ),
        # A mirror copy (the router marks it) is the same trace, marked too; a 424 is not the server's error.
        ("POST /score", server, TRACE, PARENT, attrs("POST", "/score", 424, "d", **{"endpoints.mirror": True}), unset),
    ]
    # No traceparent: a trace of its own (no parent). Unknown paths are named by the fixed route set.
    (name, kind, trace, parent, attributes, status) = _summary(spans[4])
    assert (name, kind, trace != TRACE, parent, attributes, status) == (
        "POST /score",
        server,
        True,
        None,
        attrs("POST", "/score", 200, "e"),
        unset,
    )
    assert _summary(spans[5])[0::4] == ("GET other", attrs("GET", "other", 404, "f"))
    assert len(spans) == 6


def test_a_5xx_answer_marks_the_span_as_an_error(served, client, exporter):
    with served(tracer_provider=_provider(exporter)) as s:
        s.frontend.begin_drain()
        assert client.post(s.url + "/score", json={}, headers={"x-request-id": "g"}).status_code == 503
    [span] = exporter.get_finished_spans()
    assert (span.attributes["http.response.status_code"], span.attributes["endpoints.reason"]) == (503, "draining")
    assert span.status.status_code == StatusCode.ERROR


def test_tracing_is_off_unless_an_otlp_endpoint_is_set():
    assert tracing_from_env({}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert tracing_from_env({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    assert tracing_from_env(endpoint) is not None
    assert tracing_from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}) is not None
