"""An async response as the speech pipeline's audio sink (``voxperf serve`` streams through it).

:class:`~voxperf.pipeline.speech.SpeechPipeline` runs in a worker thread and writes each chunk to
a :class:`HandoffSink`; an async consumer on the event loop (an HTTP response body, a WebSocket
sender) takes it with :meth:`HandoffSink.body`, and the pipeline's ``write`` returns only once the
consumer asked for the next piece, i.e. after the previous one was sent (a Starlette response
resumes its body iterator after ``send`` returned). So the pipeline's delivery times are the
wire's, TTFA is the library's TTFA (request start → the chunk with the first audible sample handed
over), at most one chunk waits in memory, and a slow reader slows the synthesis instead of filling
memory.

A client that goes away (the body iterator is closed) or a request past its deadline makes the
next ``write`` raise :class:`ClientGone` in the pipeline's thread: the synthesis stops there.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from voxperf.audio.pcm import Audio
from voxperf.errors import Cancelled

__all__ = ["ClientGone", "HandoffSink"]

_END = object()
T = TypeVar("T")


class ClientGone(Cancelled):
    """The response cannot take more audio: the client disconnected or the deadline passed (the
    speech side of the library's one cancellation, :class:`~voxperf.errors.Cancelled`)."""


class HandoffSink:
    """An :class:`~voxperf.pipeline.sinks.AudioSink` whose chunks become async response pieces."""

    name = "http"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        encode: Callable[[Audio, bool], bytes],
        deadline_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self._encode = encode  # (chunk, is_first) -> body bytes (the first carries the WAV header)
        self._sent = threading.Event()
        self._gone = threading.Event()
        self._first = True
        self._monotonic = monotonic
        self._deadline = None if deadline_s is None else monotonic() + deadline_s
        self.sent_bytes: list[bytes] = []  # the body as sent (for the phrase cache)

    # -- the pipeline's thread --------------------------------------------------------------

    def write(self, chunk: Audio) -> None:
        piece = self._encode(chunk, self._first)
        self._first = False
        self._hand_over(piece)

    def close(self) -> None:
        if not self._gone.is_set():
            asyncio.run_coroutine_threadsafe(self._queue.put(_END), self._loop)

    def fail(self, exc: BaseException) -> None:
        """The pipeline failed: the body (or the endpoint waiting for the first chunk) gets ``exc``."""
        if not self._gone.is_set():
            asyncio.run_coroutine_threadsafe(self._queue.put(exc), self._loop)

    def _hand_over(self, piece: bytes) -> None:
        if self._gone.is_set():
            raise ClientGone("the client is gone")
        self._sent.clear()
        asyncio.run_coroutine_threadsafe(self._queue.put(piece), self._loop).result()
        while not self._sent.wait(0.05):
            if self._gone.is_set():
                raise ClientGone("the client is gone")
            if self._deadline is not None and self._monotonic() > self._deadline:
                self._gone.set()
                raise ClientGone("the request ran past its deadline")

    def abandon(self) -> None:
        """The response is over: any write still to come stops the pipeline."""
        self._gone.set()
        self._sent.set()

    # -- the event loop ---------------------------------------------------------------------

    def start(self, run: Callable[[], T]) -> asyncio.Future[T | None]:
        """Run ``run`` (a pipeline writing into this sink) in a worker thread. The future gives its
        result, or None when it stopped because the response could take no more; an error it
        raises reaches :meth:`first` or :meth:`body` instead."""

        def job() -> T | None:
            try:
                return run()
            except ClientGone:
                return None
            except BaseException as exc:
                self.fail(exc)
                return None
            finally:
                self.close()

        return self._loop.run_in_executor(None, job)

    async def first(self) -> bytes | BaseException | None:
        """The first body piece, or the pipeline's error before it, or None (no audio at all)."""
        item = await self._queue.get()
        if item is _END:
            return None
        return item  # type: ignore[no-any-return]

    async def body(self, first: bytes) -> AsyncIterator[bytes]:
        """The response body: ``first`` (already taken), then every piece as the pipeline writes it."""
        try:
            item: Any = first
            while True:
                if isinstance(item, BaseException):
                    return  # headers are sent; the stream ends short (the trace records the error)
                self.sent_bytes.append(item)
                yield item
                self._sent.set()  # resumed: the piece was handed to the transport
                item = await self._queue.get()
                if item is _END:
                    return
        finally:
            self._gone.set()  # closed early (disconnect) or done: the pipeline's next write stops
            self._sent.set()
