"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` variables.

``OTEL_TRACES_EXPORTER`` picks the exporter: ``otlp`` (endpoint from ``OTEL_EXPORTER_OTLP_ENDPOINT``),
``console``, or ``none`` (the default here: spans still get ids, so logs and headers can carry them).
``OTEL_TRACES_SAMPLER`` picks the sampler as the SDK defines it; when it is unset, the service's own
``IG_TRACE_SAMPLE_RATIO`` applies: parent-based, so a request whose caller traces it is always recorded, and that
ratio of the traces that start here. Recording a span costs about a millisecond of CPU per request in Python,
which a hot path like the Policy Reasoner cannot pay on every decision.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

_configured = False


def _exporter_from_environment() -> SpanExporter | None:
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if choice in ("", "none"):
        return None
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"invalid setting OTEL_TRACES_EXPORTER: {choice!r} (expected otlp, console or none)")


def _sampler(sample_ratio: float) -> Sampler | None:
    """None lets the SDK read OTEL_TRACES_SAMPLER (and _ARG) when an operator set it."""
    if os.environ.get("OTEL_TRACES_SAMPLER", "").strip():
        return None
    return ParentBased(TraceIdRatioBased(sample_ratio))


def configure_tracing(service_name: str, region: str, version: str = "1.2.1", sample_ratio: float = 1.0) -> None:
    """Install the tracer provider and the gRPC, asyncpg and aiokafka instrumentations (once per process)."""
    global _configured
    if _configured:
        return
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name), "service.version": version,
         "cloud.region": region}
    )
    provider = TracerProvider(resource=resource, sampler=_sampler(sample_ratio))
    exporter = _exporter_from_environment()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer

    GrpcAioInstrumentorServer().instrument()  # type: ignore[no-untyped-call]
    GrpcAioInstrumentorClient().instrument()  # type: ignore[no-untyped-call]
    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    AIOKafkaInstrumentor().instrument()
    _configured = True


def instrument_fastapi(app: FastAPI) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # One server span per request: the ASGI receive/send child spans cost about as much again and say nothing the
    # server span's status and duration do not.
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,metrics", exclude_spans=["receive", "send"])
