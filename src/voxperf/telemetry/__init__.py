"""voxperf telemetry: runtime events from an app to an ingest endpoint (opt-in, privacy-safe).

:mod:`voxperf.telemetry.client` is what an app embeds: set ``VOXPERF_INGEST_URL`` (the dictation
app's ``VOX_PERF_INGEST_URL`` works too) and hand it ``pipeline_timing`` events; an allow-list
keeps anything else (a transcript, a key) from ever leaving the process.
"""

from voxperf.telemetry.client import INGEST_ENV, TelemetryClient, sanitize_event

__all__ = ["INGEST_ENV", "TelemetryClient", "sanitize_event"]
