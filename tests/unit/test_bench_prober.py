"""bench/prober.py, against a stub HTTP server: it probes on schedule until
its stdin closes, then reports each probe's time and what failed."""

from __future__ import annotations

import http.server
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import msgspec
import pytest

from flashsale.bench.prober import Probes
from flashsale.bench.under_attack import Probe


class _Stub(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/ok" else 404
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_port() -> Iterator[int]:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Stub) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.server_address[1]
        server.shutdown()


def probe_for(port: int, path: str, seconds: float) -> Probes:
    command = [sys.executable, "-m", "flashsale.bench.prober", "--port", str(port),
               "--path", path, "--every", "0.01"]  # fmt: skip
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as prober:
        time.sleep(seconds)
        output, _ = prober.communicate(timeout=30)
    return msgspec.json.decode(output, type=dict[str, Probes])["probes"]


def test_the_prober_reports_every_probe_until_its_stdin_closes(stub_port: int) -> None:
    found = probe_for(stub_port, "/ok", 1.5)
    assert len(found.seconds) >= 20  # every 10 ms, the interpreter's start aside
    assert len(found.late) == len(found.seconds)
    assert found.failures == {}


def test_the_prober_counts_answers_other_than_200_by_status(stub_port: int) -> None:
    found = probe_for(stub_port, "/missing", 0.8)
    assert found.failures == {"404": len(found.seconds)}


def test_a_probe_reads_its_percentiles_in_milliseconds() -> None:
    probe = Probe(seconds=[i / 1000 for i in range(1, 101)], late=[0.002] * 100)
    assert probe.ms(0.5) == 51
    assert probe.p99_ms == 100
    assert probe.ms(1.0) == 100
    assert probe.ms(0.99, "late") == 2
    assert Probe().p99_ms is None
