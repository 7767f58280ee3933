"""Processing levels: the local clean-up and polish through a real local OpenAI-compatible server."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxperf.engines.base import Rewriter
from voxperf.engines.registry import create_engine, parse_spec
from voxperf.engines.rewrite.local import LocalRewriter, clean_text
from voxperf.engines.rewrite.openai_chat import POLISH_SYSTEM_PROMPT, OpenAIChatRewriter
from voxperf.errors import EngineError, UsageError

SECRET = "sk-test-0123456789-very-secret"

# --- clean_text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("um so i think the the plan is fine", "So I think the plan is fine."),
        ("So, um, I think it works", "So, I think it works."),
        ("Uh, hello there", "Hello there."),
        ("We, er, hmm, should go", "We, should go."),
        ("I was uh going home", "I was going home."),
        ("You know, it works!", "It works!"),
        ("i mean, we should go. i mean it", "We should go. I mean it."),
        ("it was, you know, fine", "It was, fine."),
        ("hello world ,how are you ?", "Hello world, how are you?"),
        ("  lots   of\tspace\n here ", "Lots of space here."),
        ("The The THE cat sat", "The cat sat."),
        ("that's that's fine", "That's fine."),
        ("i'm sure i'll go and i know", "I'm sure I'll go and I know."),
        ("first. second! third? fourth", "First. Second! Third? Fourth."),
        ("what,,, is this;", "What, is this."),
        ("It costs 3,000 dollars at example.com", "It costs 3,000 dollars at example.com."),
        ("well... okay", "Well... okay."),
        # Word boundaries: fillers inside words and look-alike words stay.
        ("umbrella error her ahead hummus", "Umbrella error her ahead hummus."),
        ("the erm umpire", "The umpire."),
        ("Already done.", "Already done."),
        ("um, uh, hmm", ""),
        ("", ""),
        (" ,. ", ""),
    ],
)
def test_clean_text_cases(raw: str, cleaned: str) -> None:
    assert clean_text(raw) == cleaned


_WORDS = ["um", "uh", "Er", "hmm", "the", "The", "i", "I", "you", "know", "mean", "hello", "world", "cat"]
_TOKENS = st.sampled_from([*_WORDS, ",", ".", "?", "!", ";", "...", "you know,", "I mean,"])
_SEPARATORS = st.sampled_from([" ", "  ", "", "\n"])


@st.composite
def transcripts(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(_TOKENS, max_size=14))
    return "".join(token + draw(_SEPARATORS) for token in tokens)


@settings(max_examples=400, deadline=None)
@given(transcripts())
def test_clean_text_is_idempotent(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once


@settings(max_examples=300, deadline=None)
@given(transcripts())
def test_clean_text_output_shape(text: str) -> None:
    out = clean_text(text)
    if not out:
        return
    assert out[-1] in ".!?…"
    assert out == out.strip() and "  " not in out
    assert out[0].isupper() or not out[0].isalpha()
    tokens = out.split()
    assert not {"um", "uh", "er", "hmm"} & {t.strip(",.;:!?").lower() for t in tokens}
    # No word directly repeats itself (punctuation in between, as in "the, the", is allowed).
    assert all(a.lower() != b.rstrip(",.;:!?").lower() for a, b in itertools.pairwise(tokens))


# --- levels ---------------------------------------------------------------------------------------


def test_local_rewriter_levels() -> None:
    rewriter = LocalRewriter()
    assert isinstance(rewriter, Rewriter)
    text = "um the the test"
    assert rewriter.rewrite(text, "raw") == text
    assert rewriter.rewrite(text, "clean") == "The test."
    assert rewriter.rewrite(text, " CLEAN ") == "The test."
    with pytest.raises(UsageError, match="polish") as caught:
        rewriter.rewrite(text, "polish")
    assert caught.value.hint and "OPENAI_BASE_URL" in caught.value.hint
    with pytest.raises(UsageError, match="fancy") as caught:
        rewriter.rewrite(text, "fancy")
    assert caught.value.hint and all(level in caught.value.hint for level in ("raw", "clean", "polish"))


def test_openai_rewriter_needs_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UsageError, match="base URL") as caught:
        OpenAIChatRewriter()
    assert caught.value.hint and "OPENAI_BASE_URL" in caught.value.hint
    with pytest.raises(UsageError, match="base_url"):
        OpenAIChatRewriter(base_url="ftp://example.org/v1")
    with pytest.raises(UsageError, match="timeout_s"):
        OpenAIChatRewriter(base_url="http://127.0.0.1:1/v1", timeout_s="soon")


# --- a real local stand-in for an OpenAI-compatible server ---------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """/ok/... answers, /fail/... 500s, /auth/... 401s (echoing the key), /slow/... stalls."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        _Handler.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        mode = self.path.strip("/").split("/")[0]
        if self.path != f"/{mode}/v1/chat/completions":
            self._send(404, {"error": {"message": "not found"}})
        elif mode == "ok":
            user = body["messages"][-1]["content"]
            self._send(
                200, {"choices": [{"message": {"role": "assistant", "content": f" {user.upper()} \n"}}]}
            )
        elif mode == "fail":
            self._send(500, {"error": {"message": "model crashed"}})
        elif mode == "auth":
            self._send(
                401,
                {"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}"}},
            )
        elif mode == "garbage":
            self._send(200, {"unexpected": True})
        elif mode == "slow":
            time.sleep(1.0)
            self._send(200, {"choices": [{"message": {"content": "late"}}]})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """The timeout test hangs up on purpose; the broken pipe that follows is expected."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _assert_no_secret(rewriter: OpenAIChatRewriter, error: BaseException | None = None) -> None:
    assert SECRET not in json.dumps(rewriter.info.to_dict())
    assert SECRET not in repr(rewriter)
    if error is not None:
        assert SECRET not in str(error)
        assert SECRET not in repr(error)
        assert all(
            SECRET not in str(part) for part in (getattr(error, "message", ""), getattr(error, "hint", ""))
        )


def test_polish_success(server: str) -> None:
    _Handler.requests.clear()
    rewriter = OpenAIChatRewriter(base_url=f"{server}/ok/v1/", model="tiny-chat", api_key=SECRET)
    assert isinstance(rewriter, Rewriter)
    assert rewriter.rewrite("um hello there", "polish") == "UM HELLO THERE"
    (request,) = _Handler.requests
    assert request["path"] == "/ok/v1/chat/completions"
    assert request["auth"] == f"Bearer {SECRET}"
    assert request["body"]["model"] == "tiny-chat"
    assert request["body"]["messages"][0] == {"role": "system", "content": POLISH_SYSTEM_PROMPT}
    assert request["body"]["messages"][1] == {"role": "user", "content": "um hello there"}
    assert rewriter.info.model == "tiny-chat" and rewriter.info.settings["api_key_set"] is True
    _assert_no_secret(rewriter)


def test_polish_raw_and_clean_stay_local(server: str) -> None:
    _Handler.requests.clear()
    rewriter = OpenAIChatRewriter(base_url=f"{server}/ok/v1", api_key=SECRET)
    assert rewriter.rewrite("um the the test", "raw") == "um the the test"
    assert rewriter.rewrite("um the the test", "clean") == "The test."
    assert rewriter.rewrite("   ", "polish") == ""
    assert _Handler.requests == []


def test_polish_defaults_from_environment(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _Handler.requests.clear()
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server}/ok/v1")
    monkeypatch.setenv("VOXPERF_POLISH_MODEL", "env-model")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rewriter = create_engine(parse_spec("rewrite", "openai"))
    assert rewriter.rewrite("hi", "polish") == "HI"
    assert _Handler.requests[0]["body"]["model"] == "env-model"
    assert _Handler.requests[0]["auth"] is None
    assert rewriter.info.settings["api_key_set"] is False


def test_polish_server_error_is_engine_error(server: str) -> None:
    rewriter = OpenAIChatRewriter(base_url=f"{server}/fail/v1", api_key=SECRET)
    with pytest.raises(EngineError, match="HTTP 500") as caught:
        rewriter.rewrite("hello", "polish")
    assert "model crashed" in caught.value.message
    assert caught.value.hint
    _assert_no_secret(rewriter, caught.value)


def test_polish_unauthorized_mentions_key_but_never_shows_it(server: str) -> None:
    rewriter = OpenAIChatRewriter(base_url=f"{server}/auth/v1", api_key=SECRET)
    with pytest.raises(EngineError, match="401") as caught:
        rewriter.rewrite("hello", "polish")
    assert caught.value.hint and "API key" in caught.value.hint and "OPENAI_API_KEY" in caught.value.hint
    assert "***" in caught.value.message  # the server echoed the key; voxperf redacted it
    _assert_no_secret(rewriter, caught.value)


def test_polish_bad_response_and_404(server: str) -> None:
    with pytest.raises(EngineError, match="no chat completion"):
        OpenAIChatRewriter(base_url=f"{server}/garbage/v1").rewrite("hello", "polish")
    with pytest.raises(EngineError, match="HTTP 404") as caught:
        OpenAIChatRewriter(base_url=f"{server}/ok").rewrite("hello", "polish")
    assert caught.value.hint and "base_url" in caught.value.hint


def test_polish_timeout(server: str) -> None:
    rewriter = OpenAIChatRewriter(base_url=f"{server}/slow/v1", api_key=SECRET, timeout_s="0.2")
    with pytest.raises(EngineError, match="timed out") as caught:
        rewriter.rewrite("hello", "polish")
    assert caught.value.hint and "timeout_s" in caught.value.hint


def test_polish_unreachable_server() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rewriter = OpenAIChatRewriter(base_url=f"http://127.0.0.1:{port}/v1", api_key=SECRET)
    with pytest.raises(EngineError, match="cannot reach") as caught:
        rewriter.rewrite("hello", "polish")
    assert caught.value.hint and "base_url" in caught.value.hint
    _assert_no_secret(rewriter, caught.value)
