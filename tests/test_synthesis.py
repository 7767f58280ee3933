"""The optional synthesis paragraph fails open against a local OpenAI-compatible stand-in."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from voxperf.report.compare import compare_results
from voxperf.report.render import render_markdown
from voxperf.report.synthesis import synthesize

from .conftest import synthetic

SEEN: list[dict[str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        SEEN.append(body)
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path.startswith("/broken"):
            self.send_response(500)
            self.end_headers()
            return
        answer = (
            b"not json"
            if self.path.startswith("/garbage")
            else json.dumps(
                {"choices": [{"message": {"content": "stt got slower; profile the model load."}}]}
            ).encode()
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


class Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """The timeout case hangs up on purpose."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = Quiet(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def comparison():
    base = synthetic({"f": [100.0, 101, 99, 100, 100.5]})
    head = synthetic({"f": [150.0, 151, 149, 150, 150.5]})
    return compare_results(base, head, resamples=200)


def test_synthesis_paragraph(server: str, comparison) -> None:
    got = synthesize(comparison, base_url=f"{server}/v1", api_key="k", model="m")
    assert got.text == "stt got slower; profile the model load." and got.note is None
    sent = SEEN[-1]["messages"][1]["content"]
    assert "stt_ms" in sent and "regression" in sent
    md = render_markdown(comparison, synthesis=got.text)
    assert "> stt got slower" in md


@pytest.mark.parametrize(
    ("path", "note"), [("/broken/v1", "500"), ("/garbage/v1", "unexpected"), ("/slow/v1", "TimeoutError")]
)
def test_synthesis_fails_open(server: str, comparison, path: str, note: str) -> None:
    got = synthesize(comparison, base_url=f"{server}{path}", timeout_s=0.3)
    assert got.text is None and note in (got.note or "")
    md = render_markdown(comparison, synthesis=f"_{got.note}_")
    assert "regression" in md  # the report is intact


def test_no_endpoint(comparison, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert synthesize(comparison).note == "synthesis skipped: no OPENAI_BASE_URL configured"
