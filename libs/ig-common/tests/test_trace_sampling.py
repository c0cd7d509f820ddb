"""The sampler configure_tracing installs: parent-based ratio by default, the OTEL_* variables when set."""

from __future__ import annotations

import pytest
from ig_common.telemetry import _sampler
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags


def tracer(ratio: float) -> trace.Tracer:
    return TracerProvider(sampler=_sampler(ratio)).get_tracer("test")


def traced_parent(sampled: bool) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(trace_id=0x1F, span_id=0x2F, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(parent))


@pytest.mark.parametrize(("ratio", "parent_sampled", "recorded"), [
    (0.0, None, False),  # a root span at ratio 0 is not recorded ...
    (1.0, None, True),
    (0.0, True, True),   # ... but a caller that traces the request always gets its span
    (1.0, False, False),  # and a caller that chose not to is respected
])
def test_parent_based_ratio(monkeypatch: pytest.MonkeyPatch, ratio: float, parent_sampled: bool | None,
                            recorded: bool) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    context = None if parent_sampled is None else traced_parent(parent_sampled)
    with tracer(ratio).start_as_current_span("Decide", context=context) as span:
        assert span.is_recording() is recorded
        assert span.get_span_context().trace_id != 0  # logs carry a trace id either way


def test_the_standard_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert _sampler(0.0) is None  # the SDK then reads OTEL_TRACES_SAMPLER itself
    with tracer(0.0).start_as_current_span("Decide") as span:
        assert span.is_recording()
