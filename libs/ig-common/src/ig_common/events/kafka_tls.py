"""Kafka clients speak TLS only, presenting the workload certificate.

The broker requires a client certificate from the suite's CA and maps its subject ``CN=<name>`` to the principal
``User:<name>``, whose ACLs (``policies/authz/kafka-topics.yaml``) say which topics it may write and read. A client
takes a *source* of ``ssl`` contexts rather than one context: each new producer or consumer asks it again, so one
built after the certificate was renewed on disk presents the renewed one.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

SslContextSource = Callable[[], ssl.SSLContext]


def client_security(ssl_context: ssl.SSLContext) -> dict[str, Any]:
    """The keyword arguments every aiokafka client (producer, consumer, admin) is built with."""
    return {"security_protocol": "SSL", "ssl_context": ssl_context}
