"""``voxperf telemetry serve``: the telemetry service (ingest, dashboard, alerts) on uvicorn."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from voxperf.cli._common import JsonOpt, app, handle_errors

telemetry_app = typer.Typer(
    help="Production telemetry: ingest app events, dashboard, alerts, Prometheus /metrics.",
    no_args_is_help=True,
)
app.add_typer(telemetry_app, name="telemetry")


@telemetry_app.command("serve")
@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8600,
    store: Annotated[
        str | None,
        typer.Option(help="DuckDB file or postgresql://... URL (VOXPERF_TELEMETRY_STORE)"),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(help="tenant:KEY or tenant:sha256:HEX (repeat; VOXPERF_TELEMETRY_API_KEYS)"),
    ] = None,
    raw_days: Annotated[float | None, typer.Option(help="Days raw events are kept before rollup")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="POST alert state changes here")] = None,
    max_inflight: Annotated[int | None, typer.Option(help="Batches stored at once; past it, 429")] = None,
) -> None:
    """Run the telemetry service: POST /v1/telemetry, /v1/traces, /v1/metrics; GET /dashboard,
    /v1/alerts, /metrics."""
    from voxperf.extras import require_extra

    require_extra("telemetry", "the telemetry service (voxperf telemetry serve)")
    import uvicorn

    from voxperf.telemetry.server import create_telemetry_app, load_settings
    from voxperf.telemetry.store import TelemetryStore

    settings = load_settings(
        {
            "store": store,
            "api_keys": api_key or None,
            "raw_days": raw_days,
            "webhook_url": webhook_url,
            "max_inflight": max_inflight,
        }
    )
    opened = TelemetryStore(settings.store, raw_days=settings.raw_days, rollup_days=settings.rollup_days)
    uvicorn.run(
        create_telemetry_app(settings, store=opened, own_store=True),
        host=host,
        port=port,
        log_level="warning",
    )


@telemetry_app.command("compare")
@handle_errors
def compare(
    result: Annotated[Path, typer.Argument(help="A bench result file")],
    telemetry: Annotated[
        str,
        typer.Option(
            envvar="VOXPERF_TELEMETRY_URL", help="Telemetry server URL, DuckDB path or postgresql:// URL"
        ),
    ],
    app_version: Annotated[
        str | None, typer.Option(help="Production events of this app version only")
    ] = None,
    window: Annotated[str, typer.Option(help="Production window: 24h, 7d ...")] = "7d",
    json_out: JsonOpt = False,
) -> None:
    """Bench and production side by side: the result's p50/p95 next to what users' apps reported."""
    from voxperf.bench.schema import load_result
    from voxperf.telemetry.production import production_summary, render_markdown, side_by_side

    production = production_summary(
        telemetry, app_version=app_version, window=window, api_key=os.environ.get("VOXPERF_TELEMETRY_KEY")
    )
    rows = side_by_side(load_result(result), production)
    if json_out:
        sys.stdout.write(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    else:
        sys.stdout.write(render_markdown(rows, app_version=app_version, window=window))
