"""One sticky PR comment through the GitHub REST API: found by a hidden marker, edited in place.

``upsert_comment`` lists the PR's comments (all pages), edits the first one carrying the marker,
deletes older duplicates, or creates the comment when none exists. Token from ``GITHUB_TOKEN``;
API URL overridable (``GITHUB_API_URL``, GitHub Enterprise, or a local stand-in in tests). The
token never appears in messages.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from voxperf.errors import GitHubError, UsageError
from voxperf.report.render import COMMENT_MARKER

__all__ = ["DEFAULT_API_URL", "UpsertResult", "upsert_comment"]

DEFAULT_API_URL = "https://api.github.com"
PER_PAGE = 100
MAX_PAGES = 50


@dataclass
class UpsertResult:
    action: str  # "created" | "updated"
    comment_id: int
    deleted: list[int] = field(default_factory=list)


class _Client:
    def __init__(self, api_url: str, token: str, timeout_s: float) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("X-GitHub-Api-Version", "2022-11-28")
        req.add_header("User-Agent", "voxperf")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200].replace(self.token, "***")
            hint = {
                401: "GITHUB_TOKEN is missing or invalid",
                403: "the token lacks permission (pull-requests: write / issues: write)",
                404: "check the repository slug and PR number (or the token cannot see the repository)",
            }.get(exc.code, "see the GitHub API response")
            raise GitHubError(f"GitHub API {method} {path} returned {exc.code}: {detail}", hint) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise GitHubError(
                f"cannot reach the GitHub API at {self.api_url}: {exc}", "check GITHUB_API_URL"
            ) from None
        return json.loads(raw) if raw else None


def _own_login(client: _Client) -> str | None:
    """The token's login; None for an installation token (GITHUB_TOKEN gets 403 on /user)."""
    try:
        me = client.request("GET", "/user")
    except GitHubError as exc:
        if "returned 403" in exc.message or "returned 404" in exc.message:
            return None
        raise
    return str(me["login"]) if isinstance(me, dict) and "login" in me else None


def upsert_comment(
    body: str,
    *,
    repo: str,
    pr: int,
    token: str,
    api_url: str = DEFAULT_API_URL,
    marker: str = COMMENT_MARKER,
    timeout_s: float = 30.0,
) -> UpsertResult:
    """Create or update the single comment of this PR that carries ``marker``."""
    if not token:
        raise UsageError("no GitHub token", "set GITHUB_TOKEN (in Actions: ${{ secrets.GITHUB_TOKEN }})")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise UsageError(f"bad repository slug {repo!r}", "use owner/name (GITHUB_REPOSITORY)")
    if pr < 1:
        raise UsageError(f"bad PR number {pr}", "pass --pr N")
    if not body.startswith(marker):
        body = f"{marker}\n{body}"
    client = _Client(api_url, token, timeout_s)
    me = _own_login(client)

    def is_ours(comment: dict[str, Any]) -> bool:
        """Only comments this identity wrote that start with the marker (anyone can paste a marker)."""
        if not str(comment.get("body") or "").startswith(marker):
            return False
        user = comment.get("user") or {}
        return user.get("login") == me if me is not None else user.get("type") == "Bot"

    ours: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        batch = client.request("GET", f"/repos/{repo}/issues/{pr}/comments?per_page={PER_PAGE}&page={page}")
        if not isinstance(batch, list):
            raise GitHubError("unexpected GitHub API answer when listing comments", "check GITHUB_API_URL")
        ours += [c for c in batch if isinstance(c, dict) and is_ours(c)]
        if len(batch) < PER_PAGE:
            break
    if not ours:
        created = client.request("POST", f"/repos/{repo}/issues/{pr}/comments", {"body": body})
        if not isinstance(created, dict) or "id" not in created:
            raise GitHubError(
                "unexpected GitHub API answer when creating the comment", "check GITHUB_API_URL"
            )
        return UpsertResult("created", int(created["id"]))
    ours.sort(key=lambda c: int(c["id"]))
    keep, duplicates = ours[0], ours[1:]
    client.request("PATCH", f"/repos/{repo}/issues/comments/{keep['id']}", {"body": body})
    deleted = []
    for c in duplicates:
        client.request("DELETE", f"/repos/{repo}/issues/comments/{c['id']}")
        deleted.append(int(c["id"]))
    return UpsertResult("updated", int(keep["id"]), deleted)
