"""``voxperf serve`` and ``voxperf worker``: thin commands over :mod:`voxperf.service`."""

from __future__ import annotations

from typing import Annotated

import typer

from voxperf.cli._common import app, handle_errors
from voxperf.errors import UsageError


@app.command()
@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    stt: Annotated[str | None, typer.Option(help="STT engine spec, or none (VOXPERF_STT_SPEC)")] = None,
    tts: Annotated[str | None, typer.Option(help="TTS engine spec, or none (VOXPERF_TTS_SPEC)")] = None,
    workers: Annotated[int | None, typer.Option(help="Embedded job worker threads (VOXPERF_WORKERS)")] = None,
    job_dir: Annotated[
        str | None, typer.Option(help="Embedded job records directory (VOXPERF_JOB_DIR)")
    ] = None,
    jobs_db: Annotated[
        str | None, typer.Option(help="postgresql://...: job records shared with workers (VOXPERF_JOBS_DB)")
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(help="amqp://...: jobs go to Celery workers, voxperf worker (VOXPERF_BROKER_URL)"),
    ] = None,
    hash_key: Annotated[
        str | None, typer.Option(help="Print the tenant:sha256:HEX form of an API key and exit")
    ] = None,
) -> None:
    """Run the reference voice service (OpenAI-compatible audio endpoints, job API) on uvicorn.

    Settings: flag > VOXPERF_<NAME> > [tool.voxperf.serve] in pyproject.toml > default."""
    if hash_key is not None:
        from voxperf.service.security import hash_key as digest

        typer.echo(f"TENANT:sha256:{digest(hash_key)}")
        return
    import threading

    from voxperf.engines.alloc import fix_malloc_thresholds
    from voxperf.service.runtime import ServiceEngines
    from voxperf.service.settings import ServiceSettings

    settings = ServiceSettings.load(
        {
            "stt_spec": stt,
            "tts_spec": tts,
            "workers": workers,
            "job_dir": job_dir,
            "jobs_db": jobs_db,
            "broker_url": broker,
        }
    )
    fix_malloc_thresholds()  # before any engine allocates: see voxperf.engines.alloc
    engines = ServiceEngines()
    failed: list[BaseException] = []

    def load() -> None:  # models load (mostly outside the GIL) while the web stack is imported
        try:
            engines.load(settings, warm=False)  # warmed up once the server listens
        except BaseException as exc:
            failed.append(exc)

    loader = threading.Thread(target=load, name="voxperf-load-engines", daemon=True)
    loader.start()
    import uvicorn

    from voxperf.service.app import create_app
    from voxperf.service.jobs import JobRecords

    JobRecords(settings.records_target).close()  # a bad database fails here, in one line
    loader.join()
    if failed:  # an unknown engine or a missing model too
        raise failed[0]
    uvicorn.run(create_app(settings, engines), host=host, port=port, log_level="info")


@app.command()
@handle_errors
def worker(
    broker: Annotated[str | None, typer.Option(help="amqp://..., as voxperf serve --broker")] = None,
    jobs_db: Annotated[str | None, typer.Option(help="postgresql://..., as voxperf serve --jobs-db")] = None,
    stt: Annotated[str | None, typer.Option(help="STT engine spec (VOXPERF_STT_SPEC)")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs run at once, threads sharing one model (VOXPERF_WORKERS)")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "info",
) -> None:
    """Run a Celery worker for voxperf serve's job queue (the same settings as the server)."""
    from voxperf.service.settings import ServiceSettings

    settings = ServiceSettings.load(
        {
            "broker_url": broker,
            "jobs_db": jobs_db,
            "stt_spec": stt,
            "workers": concurrency,
            "tts_spec": "none",
        }
    )
    if not settings.broker_url:
        raise UsageError("voxperf worker needs a broker", "give --broker amqp://guest:guest@HOST:5672//")
    if settings.workers < 1:
        raise UsageError(f"--concurrency must be >= 1, got {settings.workers}", "e.g. --concurrency 2")
    from voxperf.engines.alloc import fix_malloc_thresholds
    from voxperf.service.celery_app import run_worker

    fix_malloc_thresholds()
    run_worker(settings, loglevel=loglevel)
