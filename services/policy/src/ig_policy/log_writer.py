"""Wiring of the decision-log writer process: the service's settings -> WAL -> PostgreSQL (decision log +
outbox) -> relay to Kafka.

Started by the service (``ig_policy.store.log_process``) with one end of a socket pair as its argument. It reads
the service's write-ahead log from its last acknowledgement on. It ends when the service closes that socket: it
takes what the WAL holds, publishes what it wrote, reports and exits.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import structlog
from ig_common.db import create_pool
from ig_common.events.outbox import OutboxRelay
from ig_common.logging import configure_logging
from ig_common.service import run_process
from ig_common.settings import load_identity, load_settings
from ig_common.telemetry import configure_tracing

from ig_policy.domain.masking import parse_drop_rules, parse_mask_rules
from ig_policy.protection_keys import load_record_protection
from ig_policy.settings import Settings
from ig_policy.store import SCHEMA
from ig_policy.store.decision_log import DecisionLog, LogSettings
from ig_policy.store.handoff import Status, encode, metric_totals, read_message
from ig_policy.store.log_process import MIRRORED_COUNTERS, MIRRORED_GAUGES
from ig_policy.store.wal_consumer import WalConsumer
from ig_policy.store.wal_tail import WalTail

log = structlog.get_logger(__name__)
REPORT_EVERY_S = 0.5
# After the last decision is written, how long the writer keeps publishing the outbox before it exits (what is
# left stays in the outbox and the next writer publishes it).
FINAL_PUBLISH_S = 5.0
# The writer wakes the relay after every commit, so a pass on the relay's own clock only finds events nobody
# announced (left by another replica, or by a writer that died between commit and wake): once a second is soon
# enough. Its default of ten passes a second, four PostgreSQL round trips each, was most of an idle pod's CPU.
RELAY_IDLE_S = 1.0


def log_settings(settings: Settings) -> LogSettings:
    return LogSettings(
        region=settings.region,
        protection=load_record_protection(settings.decision_log_pepper_file, settings.decision_log_input_key_file),
        mask_rules=parse_mask_rules(settings.decision_log_mask),
        drop_rules=parse_drop_rules(settings.decision_log_drop), queue_size=settings.decision_log_queue_size,
        batch_size=settings.decision_log_batch_size, flush_interval=settings.decision_log_flush_ms / 1000,
    )


class Reporter:
    def __init__(self, consumer: WalConsumer, stream: asyncio.StreamWriter) -> None:
        self.consumer = consumer
        self.stream = stream

    def report(self) -> None:
        self.stream.write(encode(Status(self.consumer.consumed, metric_totals(MIRRORED_COUNTERS + MIRRORED_GAUGES))))

    async def report_regularly(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            self.report()


async def until_end_of_stream(reader: asyncio.StreamReader) -> None:
    """The service sends nothing but the end of its stream (at shutdown, or when it died)."""
    while await read_message(reader) is not None:
        pass


async def write_decisions(settings: Settings, fd: int) -> None:
    configure_logging(settings.service_name, settings.log_level, settings.region)
    structlog.contextvars.bind_contextvars(process="decision-log-writer")
    configure_tracing(settings.service_name, settings.region, sample_ratio=settings.trace_sample_ratio)
    reader, stream = await asyncio.open_connection(sock=socket.socket(fileno=fd))
    pool = await create_pool(settings.database_url, reset_session=False)
    try:
        relay = OutboxRelay(pool, SCHEMA, settings.kafka_bootstrap, tls=load_identity(settings).client_ssl_context,
                            idle_interval=RELAY_IDLE_S)
        consumer = WalConsumer(
            WalTail(settings.wal_directory, fsync=settings.decision_log_wal_fsync),
            DecisionLog(pool, SCHEMA, relay, log_settings(settings)), pool, SCHEMA,
            batch_size=settings.decision_log_batch_size, poll_interval=settings.decision_log_flush_ms / 1000)
        reporter = Reporter(consumer, stream)
        stop_consuming, stop_relaying = asyncio.Event(), asyncio.Event()
        consuming = asyncio.create_task(consumer.run(stop_consuming))
        relaying = asyncio.create_task(relay.run(stop_relaying))
        reporter.report()
        reporting = asyncio.create_task(reporter.report_regularly())
        log.info("decision_log_writer_started", wal=str(settings.wal_directory))
        try:
            ended = asyncio.create_task(until_end_of_stream(reader))
            await asyncio.wait((ended, consuming), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_consuming.set()
            await consuming
            stop_relaying.set()
            await relaying
            await relay.publish_backlog(FINAL_PUBLISH_S)
            reporting.cancel()
            reporter.report()
            await stream.drain()
            stream.close()
            log.info("decision_log_writer_stopped", taken=consumer.consumed)
    finally:
        await pool.close()


def main() -> None:
    # The service decides when its writer stops (by closing the socket, after the last decision): a Ctrl-C or a
    # SIGTERM sent to the whole process group must not end the writer first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run_process(write_decisions(load_settings(Settings), int(sys.argv[1])))


if __name__ == "__main__":
    main()
