"""The sticky PR comment against a local stand-in for the GitHub REST API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from voxperf.errors import ExitCode, GitHubError
from voxperf.report.github import upsert_comment
from voxperf.report.render import COMMENT_MARKER

from .conftest import run_cli, synthetic

TOKEN = "ghs_secret_token_value"


class FakeGitHub:
    """Comments of one repository's issues, with the REST semantics voxperf uses."""

    def __init__(self) -> None:
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.next_id = 1000
        self.requests: list[tuple[str, str]] = []

    def add(self, pr: int, body: str, login: str = "voxperf-bot") -> int:
        self.next_id += 1
        user = {"login": login, "type": "Bot" if login.endswith("[bot]") else "User"}
        self.comments.setdefault(pr, []).append({"id": self.next_id, "body": body, "user": user})
        return self.next_id


def make_handler(gh: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, payload: Any = None) -> None:
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            gh.requests.append((method, url.path))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"message": "Bad credentials"})
            if url.path == "/user":
                return self._send(200, {"login": "voxperf-bot"})
            parts = url.path.strip("/").split("/")
            if parts[:1] != ["repos"] or parts[1:3] != ["acme", "voice"]:
                return self._send(404, {"message": "Not Found"})
            if parts[3:4] == ["issues"] and parts[5:6] == ["comments"]:
                pr = int(parts[4])
                if method == "GET":
                    q = parse_qs(url.query)
                    per, page = int(q["per_page"][0]), int(q["page"][0])
                    items = gh.comments.get(pr, [])
                    return self._send(200, items[(page - 1) * per : page * per])
                if method == "POST":
                    cid = gh.add(pr, self._body()["body"])
                    return self._send(201, {"id": cid})
            if parts[3:5] == ["issues", "comments"]:
                cid = int(parts[5])
                for items in gh.comments.values():
                    for c in items:
                        if c["id"] == cid:
                            if method == "PATCH":
                                c["body"] = self._body()["body"]
                                return self._send(200, c)
                            if method == "DELETE":
                                items.remove(c)
                                return self._send(204)
            return self._send(404, {"message": "Not Found"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, str]]:
    gh = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(gh))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield gh, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_create_then_update_in_place(github: tuple[FakeGitHub, str]) -> None:
    gh, url = github
    gh.add(7, "unrelated human comment")
    first = upsert_comment("report v1", repo="acme/voice", pr=7, token=TOKEN, api_url=url)
    assert first.action == "created"
    second = upsert_comment("report v2", repo="acme/voice", pr=7, token=TOKEN, api_url=url)
    assert (second.action, second.comment_id) == ("updated", first.comment_id)
    bodies = [c["body"] for c in gh.comments[7]]
    assert bodies == ["unrelated human comment", f"{COMMENT_MARKER}\nreport v2"]


def test_duplicates_deleted_across_pages(github: tuple[FakeGitHub, str]) -> None:
    gh, url = github
    oldest = gh.add(9, f"{COMMENT_MARKER}\nold")
    for i in range(150):
        gh.add(9, f"chatter {i}")
    dup = gh.add(9, f"{COMMENT_MARKER}\nolder duplicate")
    result = upsert_comment("fresh", repo="acme/voice", pr=9, token=TOKEN, api_url=url)
    assert (result.action, result.comment_id, result.deleted) == ("updated", oldest, [dup])
    ours = [c for c in gh.comments[9] if COMMENT_MARKER in c["body"]]
    assert len(ours) == 1 and ours[0]["body"].endswith("fresh")
    assert ("GET", "/repos/acme/voice/issues/9/comments") in gh.requests


def test_auth_errors_do_not_leak_the_token(github: tuple[FakeGitHub, str]) -> None:
    _, url = github
    with pytest.raises(GitHubError) as err:
        upsert_comment("x", repo="acme/voice", pr=1, token="wrong", api_url=url)
    assert "401" in err.value.message and "GITHUB_TOKEN" in (err.value.hint or "")
    with pytest.raises(GitHubError, match="404"):
        upsert_comment("x", repo="acme/other", pr=1, token=TOKEN, api_url=url)
    with pytest.raises(GitHubError, match="cannot reach"):
        upsert_comment("x", repo="acme/voice", pr=1, token=TOKEN, api_url="http://127.0.0.1:1")


def test_report_cli_posts_comment(github: tuple[FakeGitHub, str], tmp_path, monkeypatch) -> None:
    gh, url = github
    from voxperf.bench.schema import dump_result

    base, head = tmp_path / "b.json", tmp_path / "h.json"
    dump_result(synthetic({"f": [100.0, 101, 99, 100, 100.5]}), base)
    dump_result(synthetic({"f": [150.0, 151, 149, 150, 150.5]}), head)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/voice")
    monkeypatch.setenv("GITHUB_API_URL", url)
    for _ in range(2):
        proc = run_cli(
            "report", str(head), "--base", str(base), "--github-comment", "--pr", "4", "--trend", "0"
        )
        assert proc.returncode == 0, proc.stderr
    (comment,) = gh.comments[4]
    assert comment["body"].startswith(COMMENT_MARKER) and "regression" in comment["body"]
    monkeypatch.setenv("GITHUB_TOKEN", "nope")
    proc = run_cli("report", str(head), "--base", str(base), "--github-comment", "--pr", "4", "--trend", "0")
    assert (
        proc.returncode == ExitCode.PROVIDER and "nope" not in proc.stderr and "Traceback" not in proc.stderr
    )


def test_comments_by_others_are_never_edited_or_deleted(github: tuple[FakeGitHub, str]) -> None:
    gh, url = github
    planted = gh.add(11, f"{COMMENT_MARKER}\nfake report by someone else", login="mallory")
    quoted = gh.add(11, f"as the bot said:\n{COMMENT_MARKER}\nquoted", login="voxperf-bot")
    result = upsert_comment("real report", repo="acme/voice", pr=11, token=TOKEN, api_url=url)
    assert result.action == "created" and result.deleted == []
    bodies = {c["id"]: c["body"] for c in gh.comments[11]}
    assert bodies[planted].endswith("someone else") and bodies[quoted].endswith("quoted")
    assert bodies[result.comment_id].startswith(COMMENT_MARKER)
