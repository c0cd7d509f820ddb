import json
from collections.abc import Iterator

import pytest
import structlog
from ig_common.logging import configure_logging
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    # configure_logging binds the output file captured by capsys; later tests must not write to it once closed.
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_log_lines_are_json_and_carry_the_current_trace(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("example", "INFO", region="region-a")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        structlog.get_logger("t").info("did_something", items=3)
        context = span.get_span_context()
    structlog.get_logger("t").info("outside_any_span")
    inside, outside = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:])
    assert inside["event"] == "did_something" and inside["items"] == 3
    assert inside["service"] == "example" and inside["region"] == "region-a"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside
    assert trace.get_current_span().get_span_context().is_valid is False
