"""A bounded TTS phrase cache: LRU by bytes, keyed by (text, voice, format) (hits and misses are
counted by the service's metrics)."""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["PhraseCache"]


class PhraseCache:
    """Whole synthesised phrases as the response body pieces first sent for them (a WAV header
    included in the first); evicts least recently used entries over ``max_bytes``."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str, str], tuple[list[bytes], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: tuple[str, str, str]) -> tuple[list[bytes], int] | None:
        """Chunks and sample rate of a cached phrase, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, str, str], chunks: list[bytes], sample_rate: int) -> bool:
        """Store a phrase unless it alone exceeds the budget; evicts LRU entries to make room."""
        size = sum(len(c) for c in chunks)
        if size > self.max_bytes or self.max_bytes <= 0:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= sum(len(c) for c in old[0])
            while self._items and self._bytes + size > self.max_bytes:
                _, (evicted, _rate) = self._items.popitem(last=False)
                self._bytes -= sum(len(c) for c in evicted)
            self._items[key] = (chunks, sample_rate)
            self._bytes += size
            return True
