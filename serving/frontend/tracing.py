"""Optional OpenTelemetry spans of the production layer: one server span per request, exported with OTLP.

Off unless the standard OpenTelemetry variable ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and ``OTEL_SDK_DISABLED`` is not ``true``; then the OpenTelemetry
SDK (the ``tracing`` extra: ``opentelemetry-sdk``, ``opentelemetry-exporter-otlp-proto-http``) exports a span per
request over OTLP/HTTP, batched in the background (``BatchSpanProcessor``), configured by the SDK's own
``OTEL_*`` variables (headers, timeout, ``OTEL_BSP_*``). When off, nothing of OpenTelemetry is imported and the
request path does one ``is None`` test.

A span continues the trace of the request's ``traceparent`` (a child of the caller's span), or starts one. It is
named ``METHOD ROUTE`` (the route from the fixed set the metrics use, so paths never become span names), kind
server, with ``http.request.method``, ``http.route``, ``http.response.status_code``, ``endpoints.request_id``,
``endpoints.reason`` (why the layer answered itself: unauthorized, overloaded, ...) and ``endpoints.mirror`` for
the router's mirror copies. Health routes (``/``, ``/ready``, ``/metrics``: probes and scrapes) get no span. 5xx
answers set the span status to error (4xx are the client's, as OpenTelemetry's
HTTP conventions say for server spans). The endpoint and deployment are the resource's ``service.name`` and
``service.instance.id``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from serving.frontend.settings import FrontendSettingsError
from serving.logformat import process_identity

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class Tracing:
    """Starts and ends the server span of each request.

    Args:
        provider: An OpenTelemetry ``TracerProvider`` (tests pass one with an in-memory exporter).
    """

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._tracer = provider.get_tracer("serving.frontend")
        self._propagator = TraceContextTextMapPropagator()
        self._server = trace.SpanKind.SERVER

    def start(self, method: str, route: str, traceparent: bytes | None, headers: Any) -> Any:
        """Start the span of a request; ``traceparent`` is the request's valid one (None: a new trace)."""
        context = None
        if traceparent is not None:
            context = self._propagator.extract({"traceparent": traceparent.decode("latin-1")})
        attributes: dict[str, Any] = {"http.request.method": method, "http.route": route}
        if any(name == b"x-endpoints-mirror" for name, _ in headers):
            attributes["endpoints.mirror"] = True
        return self._tracer.start_span(f"{method} {route}", context, self._server, attributes)

    def end(self, span: Any, status: int, request_id: str, reason: str) -> None:
        """End a request's span with its answer."""
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("endpoints.request_id", request_id)
        if reason:
            span.set_attribute("endpoints.reason", reason)
        if status >= 500:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()


def tracing_from_env(environ: Mapping[str, str] | None = None) -> Tracing | None:
    """Spans exported with OTLP when an OTLP endpoint variable is set (see the module docstring), else None.

    Raises:
        FrontendSettingsError: tracing is asked for and the OpenTelemetry SDK is not installed.
    """
    env = os.environ if environ is None else environ
    endpoint, deployment = process_identity(env)
    attributes = {"service.name": endpoint or "endpoints-serving"}
    if deployment:
        attributes["service.instance.id"] = deployment
    provider = otlp_provider_from_env(attributes, env)
    return None if provider is None else Tracing(provider)


def otlp_provider_from_env(attributes: Mapping[str, str], environ: Mapping[str, str] | None = None) -> Any:
    """A ``TracerProvider`` exporting with OTLP/HTTP in the background when an OTLP endpoint variable is set and
    ``OTEL_SDK_DISABLED`` is not ``true``, else None. The one place that decides whether a process exports spans
    (the serving layer here, the local router in ``endpoints.local.router_tracing``).

    Args:
        attributes: The resource's attributes (``service.name``, ``service.instance.id``).
        environ: Mapping to read instead of ``os.environ``.

    Raises:
        FrontendSettingsError: tracing is asked for and the OpenTelemetry SDK is not installed.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    variable = next((name for name in ENDPOINT_VARIABLES if env.get(name)), None)
    if variable is None:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as e:
        raise FrontendSettingsError(
            f"{variable}={env[variable]}: OTLP export needs the OpenTelemetry SDK; "
            "pip install 'k8s-ml-endpoints[tracing]'"
        ) from e
    provider = TracerProvider(resource=Resource.create(dict(attributes)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
