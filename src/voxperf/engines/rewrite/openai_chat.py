"""The ``polish`` processing level through an OpenAI-compatible ``/chat/completions`` endpoint.

Works with OpenAI itself and with local servers that speak the same API (llama.cpp server,
vLLM, Ollama's OpenAI endpoint, LM Studio). Uses only the standard library's HTTP client. The API
key is sent as a bearer token and never appears in :class:`EngineInfo`, settings or error text.
``raw`` and ``clean`` are local and delegate to :class:`~voxperf.engines.rewrite.local.LocalRewriter`.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import voxperf
from voxperf.engines.base import EngineInfo
from voxperf.engines.registry import EngineOption, EnginePlugin
from voxperf.engines.rewrite.local import LocalRewriter, normalize_level
from voxperf.errors import EngineError, UsageError

__all__ = ["DEFAULT_POLISH_MODEL", "POLISH_SYSTEM_PROMPT", "OpenAIChatRewriter"]

DEFAULT_POLISH_MODEL = "gpt-4o-mini"
POLISH_SYSTEM_PROMPT = (
    "You clean up dictated text. Fix punctuation, capitalisation, grammar and obvious transcription "
    "slips, and remove filler words, without changing the meaning, adding content or answering it. "
    "Reply with only the corrected text, nothing else."
)
_KEY_HINT = "check the API key: pass api_key=... or set OPENAI_API_KEY for this endpoint"
_BODY_EXCERPT_CHARS = 200


class OpenAIChatRewriter:
    """Rewriter whose ``polish`` level asks an OpenAI-compatible chat model; raw/clean stay local.

    Options: ``base_url`` (default ``$OPENAI_BASE_URL``, e.g. ``http://127.0.0.1:8080/v1``),
    ``model`` (default ``$VOXPERF_POLISH_MODEL`` or ``gpt-4o-mini``), ``api_key`` (default
    ``$OPENAI_API_KEY``; optional for local servers) and ``timeout_s`` (default 30).
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: str | float = 30,
    ) -> None:
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").strip().rstrip("/")
        if not url:
            raise UsageError(
                "the openai rewriter needs the base URL of an OpenAI-compatible endpoint",
                "pass --rewrite openai:base_url=...,model=... or set OPENAI_BASE_URL",
            )
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UsageError(
                f"bad base_url {url!r} for the openai rewriter",
                "use an http(s) URL such as https://api.openai.com/v1 or http://127.0.0.1:8080/v1",
            )
        self.base_url = url
        self.endpoint = f"{url}/chat/completions"
        self.model = (model or os.environ.get("VOXPERF_POLISH_MODEL") or DEFAULT_POLISH_MODEL).strip()
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._api_key = key.strip() if key and key.strip() else None
        try:
            timeout = float(str(timeout_s).strip())
        except ValueError:
            timeout = math.nan
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UsageError(
                f"bad timeout_s={timeout_s!r} for the openai rewriter", "timeout_s must be seconds > 0"
            )
        self.timeout_s = timeout
        self._local = LocalRewriter()
        self.info = EngineInfo(
            role="rewrite",
            name="openai",
            version=voxperf.__version__,
            model=self.model,
            settings={
                "base_url": self.base_url,
                "timeout_s": self.timeout_s,
                "api_key_set": self._api_key is not None,
            },
        )

    def __repr__(self) -> str:
        return f"OpenAIChatRewriter(base_url={self.base_url!r}, model={self.model!r})"

    def rewrite(self, text: str, level: str) -> str:
        """raw/clean locally; polish with one chat-completions request (empty text is not sent)."""
        name = normalize_level(level)
        if name != "polish":
            return self._local.rewrite(text, name)
        if not text.strip():
            return ""
        return self._polish(text)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _polish(self, text: str) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "messages": [
                    {"role": "system", "content": POLISH_SYSTEM_PROMPT},
                    {"role": "user", "content": text},
                ],
                "temperature": 0,
            }
        ).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except TimeoutError:
            raise self._timeout_error() from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._timeout_error() from None
            raise EngineError(
                f"cannot reach {self.endpoint}: {self._redact(str(exc.reason))}",
                "check that the server is running and base_url (or OPENAI_BASE_URL) is right",
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(
                f"polish request to {self.endpoint} failed: {type(exc).__name__}: {self._redact(str(exc))}",
                "check the network and base_url (or OPENAI_BASE_URL)",
            ) from None
        return self._parse(raw)

    def _timeout_error(self) -> EngineError:
        return EngineError(
            f"polish request to {self.endpoint} timed out after {self.timeout_s:g} s",
            "raise timeout_s=... or check that the endpoint is not overloaded",
        )

    def _http_error(self, exc: urllib.error.HTTPError) -> EngineError:
        try:
            detail = exc.read().decode("utf-8", "replace")
        except OSError:
            detail = ""
        detail = self._redact(" ".join(detail.split()))[:_BODY_EXCERPT_CHARS]
        suffix = f": {detail}" if detail else ""
        if exc.code in (401, 403):
            return EngineError(f"{self.endpoint} refused the request (HTTP {exc.code}){suffix}", _KEY_HINT)
        hint = (
            f"check model={self.model!r} and base_url (it should end before /chat/completions)"
            if exc.code in (400, 404, 422)
            else "the endpoint failed; retry later or check the server's logs"
        )
        return EngineError(f"polish request to {self.endpoint} failed with HTTP {exc.code}{suffix}", hint)

    def _parse(self, raw: bytes) -> str:
        try:
            payload: Any = json.loads(raw)
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise EngineError(
                f"{self.endpoint} returned no chat completion ({type(exc).__name__})",
                "the endpoint must implement the OpenAI /chat/completions response format",
            ) from None
        if not isinstance(content, str):
            raise EngineError(
                f"{self.endpoint} returned a non-text completion",
                "the endpoint must implement the OpenAI /chat/completions response format",
            )
        return content.strip()


PLUGIN = EnginePlugin(
    role="rewrite",
    name="openai",
    factory=OpenAIChatRewriter,
    summary="an OpenAI-compatible chat completions endpoint (polish level; local servers too)",
    options=(
        EngineOption(
            "base_url", "str", None, "endpoint, e.g. http://127.0.0.1:8080/v1 (default $OPENAI_BASE_URL)"
        ),
        EngineOption("model", "str", None, "model name (default $OPENAI_MODEL)"),
        EngineOption("api_key", "str", None, "API key (default $OPENAI_API_KEY)", secret=True),
        EngineOption("timeout_s", "float", 30, "request timeout in seconds"),
    ),
)
