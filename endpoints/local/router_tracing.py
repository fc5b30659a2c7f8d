"""Optional OpenTelemetry spans of the local router: one per routed request, one per mirror copy.

On under the same rule as the serving processes (``serving.frontend.tracing.otlp_provider_from_env``: an
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` variable, ``OTEL_SDK_DISABLED`` not
``true``); the resource is ``service.name`` = the endpoint, ``service.instance.id`` = ``router``. When off,
nothing of OpenTelemetry is imported and the router does one ``is None`` test per request.

A routed request gets a span of kind server, named ``route <METHOD>``, continuing the client's ``traceparent`` (a
child of the caller's span) or starting a trace; the deployment is sent the router span's own ``traceparent``, so
the deployment's span is the router span's child. A mirror copy gets a span of kind client, a child of the live
request's router span, marked ``endpoints.mirror``, and the copy carries that span's ``traceparent``. Attributes:
``http.request.method``, ``endpoints.deployment``, ``endpoints.routed_by`` (weight, pin or mirror),
``endpoints.request_id``, ``http.response.status_code`` (none when the deployment never answered); 5xx and
failures set the span status to error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.frontend.tracing import otlp_provider_from_env
from serving.logformat import TRACEPARENT


class RouterTracing:
    """Starts and ends the router's spans.

    Args:
        provider: An OpenTelemetry ``TracerProvider`` (tests may pass one with an in-memory exporter).
    """

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._provider = provider
        self._tracer = provider.get_tracer("endpoints.local.router")
        self._propagator = TraceContextTextMapPropagator()

    def start(self, method: bytes, target: str, routed_by: str, traceparent: bytes | None) -> tuple[Any, bytes]:
        """The span of a routed request and the ``traceparent`` the deployment is sent (the span's own)."""
        context = None
        if traceparent is not None and TRACEPARENT.fullmatch(traceparent):
            context = self._propagator.extract({"traceparent": traceparent.decode("latin-1")})
        name = method.decode("latin-1")
        attributes = {"http.request.method": name, "endpoints.deployment": target, "endpoints.routed_by": routed_by}
        span = self._tracer.start_span(f"route {name}", context, self._trace.SpanKind.SERVER, attributes)
        return span, _traceparent(span)

    def start_mirror(self, live: Any, method: bytes, target: str) -> tuple[Any, bytes]:
        """The span of a mirror copy (a child of the live request's span) and the copy's ``traceparent``."""
        context = self._trace.set_span_in_context(live)
        name = method.decode("latin-1")
        attributes = {
            "http.request.method": name,
            "endpoints.deployment": target,
            "endpoints.routed_by": "mirror",
            "endpoints.mirror": True,
        }
        span = self._tracer.start_span(f"mirror {name}", context, self._trace.SpanKind.CLIENT, attributes)
        return span, _traceparent(span)

    def end(self, span: Any, status: int, request_id: bytes | None) -> None:
        """End a span with its answer's status (0: no answer from the deployment)."""
        if request_id:
            span.set_attribute("endpoints.request_id", request_id.decode("latin-1"))
        if status:
            span.set_attribute("http.response.status_code", status)
        if status == 0 or status >= 500:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()

    def shutdown(self) -> None:
        """Export what is left (the router calls this when it stops)."""
        self._provider.shutdown()


def _traceparent(span: Any) -> bytes:
    ctx = span.get_span_context()
    return b"00-%032x-%016x-%02x" % (ctx.trace_id, ctx.span_id, ctx.trace_flags)


def router_tracing_from_env(endpoint: str, environ: Mapping[str, str] | None = None) -> RouterTracing | None:
    """The router's spans when OTLP export is configured (see the module docstring), else None."""
    provider = otlp_provider_from_env({"service.name": endpoint, "service.instance.id": "router"}, environ)
    return None if provider is None else RouterTracing(provider)
