"""A synthetic workload for burn simulations: request counters with a configurable error ratio.

``python -m ig_burn.devtools.synthetic_exporter --port 9101 --rps 100 --error-ratio 0.01 --series 1`` serves
``/metrics`` with ``synthetic_requests_total{series="s0000",code="200"|"500"}`` growing at ``rps`` per second, of
which ``error_ratio`` are 500s. ``POST /control`` with ``{"error_ratio": 0.05}`` changes the ratio from now on
(``{"series": "s0003", "error_ratio": ...}`` for one series only).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Workload:
    def __init__(self, series: int, rps: float, error_ratio: float) -> None:
        self.rps = rps
        self.names = [f"s{i:04d}" for i in range(series)]
        self.ratio = dict.fromkeys(self.names, error_ratio)
        self.ok = dict.fromkeys(self.names, 0.0)
        self.errors = dict.fromkeys(self.names, 0.0)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        for name in self.names:
            requests = self.rps * elapsed
            self.errors[name] += requests * self.ratio[name]
            self.ok[name] += requests * (1.0 - self.ratio[name])

    def set_ratio(self, ratio: float, series: str | None) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("error_ratio must be between 0 and 1")
        if series is not None and series not in self.ratio:
            raise ValueError(f"unknown series {series!r}")
        with self._lock:
            self._advance()
            for name in [series] if series else self.names:
                self.ratio[name] = ratio

    def exposition(self) -> bytes:
        with self._lock:
            self._advance()
            lines = ["# HELP synthetic_requests_total Synthetic requests by outcome",
                     "# TYPE synthetic_requests_total counter"]
            for name in self.names:
                lines.append(f'synthetic_requests_total{{series="{name}",code="200"}} {self.ok[name]:.6f}')
                lines.append(f'synthetic_requests_total{{series="{name}",code="500"}} {self.errors[name]:.6f}')
        return ("\n".join(lines) + "\n").encode()


def serve(workload: Workload, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = workload.exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                workload.set_ratio(float(request["error_ratio"]), request.get("series"))
            except (ValueError, KeyError, TypeError) as error:
                self.send_error(400, str(error))
                return
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            return  # a scraper that gave up (timeout) is not our error; Prometheus records the failed scrape

    server = Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--error-ratio", type=float, default=0.0)
    parser.add_argument("--series", type=int, default=1)
    args = parser.parse_args()
    server = serve(Workload(args.series, args.rps, args.error_ratio), args.host, args.port)
    print(f"synthetic exporter on http://{args.host}:{args.port}/metrics", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
