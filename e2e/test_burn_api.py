"""The burn service's APIs as a real process: FlagService (gRPC), OFREP read by the OpenFeature SDK, /get-burn,
its OpenAPI document, BurnService, the HTML page, which listener serves what (health, HTTPS API, public), and
clear errors for bad input or a bad SLO file.

Prometheus is deliberately unreachable here: the service must start, serve flags and report every SLO as stale.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from ig.burn.v1 import burn_pb2, burn_pb2_grpc
from ig.events.v1 import events_pb2
from ig.flags.v1 import flags_pb2, flags_pb2_grpc
from ig_burn.devtools.harness import BurnProcess, free_port, synthetic_slo_yaml, throttle_policy_yaml
from ig_common.events.envelope import from_kafka_record
from ig_common.grpc_client import channel_as
from ig_common.http_client import client_as
from ig_common.tls import load_workload_certificate
from ig_infra.kafka_reading import consumer_at
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider

pytestmark = pytest.mark.integration

OPERATOR = "spiffe://maestro.local/ns/ig/sa/operator"


@pytest.fixture(scope="module")
def burn(infra: object, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurnProcess]:
    config = tmp_path_factory.mktemp("slos")
    (config / "sim.yaml").write_text(synthetic_slo_yaml("api-sim") + "---\n" + throttle_policy_yaml("api-sim"))
    env = {**infra.env(database_url, "burn"),  # type: ignore[attr-defined]
           "IG_SLO_DIR": str(config), "IG_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
           "IG_EVALUATION_INTERVAL_SECONDS": "0.5", "IG_PROMETHEUS_TIMEOUT_SECONDS": "1"}
    process = BurnProcess(env, config / "burn.log").start()
    yield process
    assert process.stop() == 0, process.logs()


@pytest.fixture(scope="module")
def flags(burn: BurnProcess) -> Iterator[flags_pb2_grpc.FlagServiceStub]:
    with channel_as("operator", burn.grpc_target) as channel:
        yield flags_pb2_grpc.FlagServiceStub(channel)


@pytest.fixture(scope="module")
def feature_client(burn: BurnProcess) -> OpenFeatureClient:
    api.set_provider(OFREPProvider(burn.url), domain="burn-api-test")
    return api.get_client("burn-api-test")


def value(v: object) -> struct_pb2.Value:
    message = struct_pb2.Value()
    if isinstance(v, bool):
        message.bool_value = v
    elif isinstance(v, int | float):
        message.number_value = v
    else:
        message.string_value = str(v)
    return message


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_policy_flags_exist_at_their_normal_values_for_openfeature(feature_client: OpenFeatureClient) -> None:
    assert feature_client.get_boolean_value("subs.optimizedBuffer", False) is True
    assert feature_client.get_integer_value("subs.rateLimitPerSecond", 0) == 500
    assert feature_client.get_boolean_value("experiments.paused", True) is False
    details = feature_client.get_boolean_details("no.such.flag", True)
    assert details.value is True and details.error_code is not None and "FLAG_NOT_FOUND" in str(details.error_code)


@pytest.mark.parametrize(("request_fields", "field"), [
    ({"key": "bad key", "value": value(True), "reason": "b"}, "key"),
    ({"key": "ok.key", "reason": "b"}, "value"),
    ({"key": "ok.key", "value": value(True), "reason": ""}, "reason"),
])
def test_set_flag_rejects_bad_input_naming_the_field(flags: flags_pb2_grpc.FlagServiceStub,
                                                     request_fields: dict[str, object], field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        flags.SetFlag(flags_pb2.SetFlagRequest(**request_fields), timeout=5)  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}:")


async def test_flag_changes_keep_history_publish_events_and_reach_openfeature(
        burn: BurnProcess, flags: flags_pb2_grpc.FlagServiceStub, feature_client: OpenFeatureClient,
        kafka_bootstrap: str) -> None:
    key = f"checkout.newFlow.{uuid.uuid4().hex[:8]}"
    async with consumer_at(kafka_bootstrap, "ig.flags.v1") as consumer:
        for v, why in ((True, "launch"), (False, "rollback after errors")):
            await asyncio.to_thread(flags.SetFlag, flags_pb2.SetFlagRequest(key=key, value=value(v), reason=why),
                                    timeout=5)
        history = flags.FlagHistory(flags_pb2.FlagHistoryRequest(key=key), timeout=5).changes
        # Who changed it is the verified caller's SPIFFE ID, whatever a client would like to claim.
        assert [(c.value.bool_value, c.changed_by, c.reason) for c in history] == [
            (False, OPERATOR, "rollback after errors"), (True, OPERATOR, "launch")]
        assert feature_client.get_boolean_value(key, True) is False
        seen: list[events_pb2.FlagChanged] = []
        async with asyncio.timeout(30):
            while len(seen) < 2:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        event = from_kafka_record(r.topic, r.key, r.value, list(r.headers))
                        if event.subject == key:
                            assert event.type == "ig.flags.changed.v1"
                            seen.append(event.parse(events_pb2.FlagChanged()))
        assert [(e.old_value.WhichOneof("kind"), e.new_value.bool_value, e.changed_by) for e in seen] == [
            ("null_value", True, OPERATOR), ("bool_value", False, OPERATOR)]
    with pytest.raises(grpc.RpcError) as caught:
        flags.GetFlag(flags_pb2.GetFlagRequest(key="never.set"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_ofrep_bulk_evaluation_honours_etag(burn: BurnProcess, flags: flags_pb2_grpc.FlagServiceStub) -> None:
    url = f"{burn.url}/ofrep/v1/evaluate/flags"
    status, headers, body = post(url, b'{"context": {"targetingKey": "u1"}}')
    assert status == 200
    keys = {f["key"] for f in json.loads(body)["flags"]}
    assert {"subs.optimizedBuffer", "experiments.paused"} <= keys
    etag = headers["etag"] if "etag" in headers else headers["ETag"]
    assert post(url, b"{}", {"If-None-Match": etag})[0] == 304
    flags.SetFlag(flags_pb2.SetFlagRequest(key="etag.probe", value=value(uuid.uuid4().hex),
                                           reason="change the set"), timeout=5)
    status, headers, _ = post(url, b"{}", {"If-None-Match": etag})
    assert status == 200 and (headers.get("etag") or headers.get("ETag")) != etag


@pytest.mark.parametrize(("body", "code"), [(b"{not json", "PARSE_ERROR"), (b'{"context": 5}', "INVALID_CONTEXT")])
def test_ofrep_rejects_bad_bodies(burn: BurnProcess, body: bytes, code: str) -> None:
    status, _, reply = post(f"{burn.url}/ofrep/v1/evaluate/flags/subs.optimizedBuffer", body)
    assert status == 400 and json.loads(reply)["errorCode"] == code


def test_get_burn_reports_stale_when_prometheus_is_unreachable_and_documents_itself(burn: BurnProcess) -> None:
    import time

    deadline = time.monotonic() + 10
    while burn.get_json("/get-burn")["evaluatedAt"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    report = burn.get_json("/get-burn")
    assert report["stale"] is True and "Prometheus" in report["error"]
    [slo] = report["slos"]
    assert slo["slo"] == "api-sim" and slo["stale"] is True and slo["throttleState"] == "ok"
    assert burn.get_json("/get-burn?service=other")["slos"] == []
    document = burn.get_json("/openapi.json")
    operation = document["paths"]["/get-burn"]["get"]
    assert operation["summary"] == "Current error-budget burn by service"
    with client_as("operator", burn.api_url, "burn", timeout=5) as client:
        refused = client.get("/get-burn", params={"service": "Bad Name"})
    assert refused.status_code == 400 and refused.headers["Content-Type"] == "application/problem+json"
    assert "service" in refused.json()["detail"]
    with urllib.request.urlopen(f"{burn.url}/openapi.json", timeout=5) as public:
        assert "/ofrep/v1/evaluate/flags/{key}" in json.loads(public.read())["paths"]
    with urllib.request.urlopen(f"{burn.url}/burn", timeout=5) as page:
        html = page.read().decode()
    assert "api-sim" in html and "Prometheus unavailable" in html and "subs.optimizedBuffer" in html
    # Production windows: said in the report, and no simulation banner on the page.
    assert report["windowScale"] == 1 and "Simulation" not in html


def test_burn_report_is_served_over_https_to_granted_callers_only(burn: BurnProcess) -> None:
    # no workload token: the handshake passes (the client presents a certificate of the CA), the guard refuses
    with httpx.Client(base_url=burn.api_url, verify=load_workload_certificate("operator").client_ssl_context(),
                      timeout=5) as anonymous:
        missing = anonymous.get("/get-burn")
    assert missing.status_code == 401 and missing.headers["Content-Type"] == "application/problem+json"
    # a known identity the table does not grant GET /get-burn
    with client_as("gateway", burn.api_url, "burn", timeout=5) as gateway:
        denied = gateway.get("/get-burn")
    assert denied.status_code == 403 and "GET /get-burn" in denied.json()["detail"]
    assert "spiffe://maestro.local/ns/ig/sa/gateway" in denied.json()["detail"]
    # plain HTTP to the API port never reaches the application
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{burn.api_port}/get-burn", timeout=5)
    # the report is on neither plain listener: not beside OFREP, not beside /healthz and /metrics
    for plain in (burn.url, burn.health_url):
        assert httpx.get(f"{plain}/get-burn", timeout=5).status_code == 404, plain
    assert httpx.post(f"{burn.health_url}/ofrep/v1/evaluate/flags", json={"context": {}}, timeout=5).status_code == 404
    assert httpx.get(f"{burn.health_url}/burn", timeout=5).status_code == 404


def test_grpc_get_burn(burn: BurnProcess) -> None:
    with channel_as("operator", burn.grpc_target) as channel:
        stub = burn_pb2_grpc.BurnServiceStub(channel)
        reply = stub.GetBurn(burn_pb2.GetBurnRequest(service="synthetic"), timeout=5)
        assert [(s.slo, s.objective, s.stale, s.throttled) for s in reply.slos] == [("api-sim", 0.99, True, False)]
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetBurn(burn_pb2.GetBurnRequest(service="NOT VALID"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "service" in caught.value.details()


def test_invalid_slo_file_stops_start_up_naming_file_and_field(infra: object, database_url: str,
                                                              tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text(synthetic_slo_yaml("x").replace("target: 0.99", "target: 99"))
    env = {**infra.env(database_url, "burn"), "IG_SLO_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}  # type: ignore[attr-defined]
    result = subprocess.run([sys.executable, "-m", "ig_burn"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{bad}: spec.objectives[0].target: must be a ratio strictly between 0 and 1" in result.stderr
