"""The job API: submit a recording, poll its record, list and cancel — each tenant its own jobs only.

Submissions are bounded (jobs and audio seconds queued or running, overall and per tenant): past a
bound the answer is 429 with ``Retry-After``, and nothing is stored. A job of another tenant is
answered exactly like a job that does not exist (404), so ids cannot be probed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from voxperf.audio.codec import decode
from voxperf.engines.base import LEVELS as ALL_LEVELS
from voxperf.errors import VoxperfError
from voxperf.service.http import ApiError, error_responses
from voxperf.service.jobs import JOB_STATUSES, Job, JobRecords, new_job_id
from voxperf.service.routes_audio import SHORT_TEXT, check_upload
from voxperf.service.state import ServiceState, get_state, get_tenant, not_draining

__all__ = ["admit", "router"]

router = APIRouter()
LEVELS = tuple(level for level in ALL_LEVELS if level != "polish")  # polish needs an LLM endpoint


def _busy(message: str, retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        message,
        "overloaded",
        "retry after the Retry-After seconds",
        {"Retry-After": str(retry_after_s)},
    )


def admit(state: ServiceState, tenant: str, audio_s: float, records: JobRecords) -> None:
    """The queue bounds, checked against the records (all servers' jobs when they share a database):
    inside the job's transaction (exact), and by RequestGuard with ``audio_s`` 0 before the upload
    is read (so a full queue costs no body)."""
    settings = state.settings
    jobs, seconds = records.active_load()
    if jobs + 1 > settings.max_queued_jobs or seconds + audio_s > settings.max_queued_audio_s:
        raise _busy(f"the job queue is full ({jobs} jobs, {seconds:.0f} s of audio waiting or running)", 10)
    mine, _ = records.active_load(tenant)
    if mine + 1 > settings.tenant_max_jobs:
        raise _busy(f"you have {mine} jobs waiting or running (limit {settings.tenant_max_jobs})", 5)


def _duration_s(data: bytes, max_duration_s: float) -> float:
    """The upload's duration (decoded once at submission: bad audio is refused before it is queued)."""
    return decode(data, name="upload", max_duration_s=max_duration_s).duration_s


@router.post(
    "/v1/jobs",
    status_code=202,
    responses=error_responses(400, 413, 415, 422, 429, 503, 507),
    dependencies=[Depends(not_draining)],
)
async def create_job(
    file: UploadFile = File(...),  # noqa: B008 - FastAPI's declaration style
    model: str = Form("tiny.en", max_length=SHORT_TEXT),
    language: str | None = Form(None, max_length=SHORT_TEXT),
    level: str = Form("raw"),
    tenant: str = Depends(get_tenant),
    state: ServiceState = Depends(get_state),  # noqa: B008
) -> Any:
    if level not in LEVELS:
        raise ApiError(400, "unknown processing level", "invalid_request_error", "use raw or clean")
    records = state.jobs()
    # uploads at once are bounded by RequestGuard, before the body is read
    data = await file.read()
    check_upload(data)
    audio_s = await run_in_threadpool(_duration_s, data, state.settings.max_duration_s)
    job = Job(id=new_job_id(), owner=tenant, level=level, model=model, language=language, audio_s=audio_s)
    await run_in_threadpool(records.create, job, data, lambda r: admit(state, tenant, audio_s, r))
    del data
    if state.celery is not None:
        from voxperf.service.celery_app import enqueue

        try:
            await run_in_threadpool(enqueue, state.celery, job.id)
        except VoxperfError:  # no message was sent: do not leave a job nobody will run
            await run_in_threadpool(records.cancel, job.id)
            raise
    elif state.queue is not None:
        state.queue.notify()
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "no such job", "not_found", "list your jobs with GET /v1/jobs")


@router.get("/v1/jobs/{job_id}", responses=error_responses(404))
async def get_job(
    job_id: str,
    tenant: str = Depends(get_tenant),
    state: ServiceState = Depends(get_state),  # noqa: B008
) -> Any:
    job = await run_in_threadpool(state.jobs().get, job_id, tenant)
    if job is None:
        raise _not_found(job_id)
    return job.to_dict()


@router.delete("/v1/jobs/{job_id}", responses=error_responses(404, 409))
async def cancel_job(
    job_id: str,
    tenant: str = Depends(get_tenant),
    state: ServiceState = Depends(get_state),  # noqa: B008
) -> Any:
    records = state.jobs()
    job = await run_in_threadpool(records.get, job_id, tenant)
    if job is None:
        raise _not_found(job_id)
    if job.status not in ("queued", "running"):
        raise ApiError(
            409, f"the job is already {job.status}", "conflict", "only queued or running jobs cancel"
        )
    job = await run_in_threadpool(records.cancel, job_id, tenant)
    if job is None:
        raise _not_found(job_id)
    if job.status == "cancelled":
        state.metrics.jobs.labels(outcome="cancelled").inc()
        if state.celery is not None:
            from voxperf.service.celery_app import revoke

            await run_in_threadpool(revoke, state.celery, job_id)
    return job.to_dict()


@router.get("/v1/jobs", responses=error_responses(400))
async def list_jobs(
    status: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    before: str | None = Query(None, max_length=64, description="the next_before of the previous page"),
    tenant: str = Depends(get_tenant),
    state: ServiceState = Depends(get_state),  # noqa: B008
) -> Any:
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(
            400, "unknown status", "invalid_request_error", f"use one of {', '.join(JOB_STATUSES)}"
        )
    jobs = await run_in_threadpool(state.jobs().list, tenant, status, limit + 1, before)
    page, more = jobs[:limit], len(jobs) > limit
    return {
        "object": "list",
        "data": [j.to_dict() for j in page],
        "has_more": more,
        "next_before": page[-1].id if more else None,
    }
