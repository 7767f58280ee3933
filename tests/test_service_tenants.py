"""Tenants, backpressure, bad input and settings of ``voxperf serve`` (fake engines, real HTTP)."""

from __future__ import annotations

import json
import socket
from functools import partial
from pathlib import Path

import httpx
import pytest

from voxperf.errors import UsageError
from voxperf.service.app import ServiceSettings
from voxperf.service.http import ApiError
from voxperf.service.security import InFlight, RateLimiter, hash_key

from .conftest import fake_engines, serve_app, tone

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


def tenants(tmp_path: Path, **kw: object) -> ServiceSettings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    keys = tmp_path / "keys"
    keys.write_text(
        f"# tenant:sha256:HEX\nacme:sha256:{hash_key('key-a')}\nbeta:sha256:{hash_key('key-b')}\n"
    )
    return ServiceSettings(job_dir=str(tmp_path / "jobs"), workers=0, api_keys_file=str(keys), **kw)  # type: ignore[arg-type]


def test_a_tenant_sees_reads_and_cancels_only_its_own_jobs(tmp_path: Path) -> None:
    for url in serve_app(tenants(tmp_path), fake_engines()):
        mine = httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}, headers=A).json()
        theirs = httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}, headers=B).json()
        assert mine["owner"] == "acme" and theirs["owner"] == "beta"
        # list: only one's own
        assert [j["id"] for j in httpx.get(f"{url}/v1/jobs", headers=A).json()["data"]] == [mine["id"]]
        listed = httpx.get(f"{url}/v1/jobs", params={"status": "queued"}, headers=B).json()["data"]
        assert [j["id"] for j in listed] == [theirs["id"]]
        # read: another tenant's job does not exist (404, the same as an unknown id)
        assert httpx.get(f"{url}/v1/jobs/{theirs['id']}", headers=A).status_code == 404
        assert httpx.get(f"{url}/v1/jobs/{mine['id']}", headers=A).status_code == 200
        # cancel: the same
        assert httpx.delete(f"{url}/v1/jobs/{theirs['id']}", headers=A).status_code == 404
        assert httpx.get(f"{url}/v1/jobs/{theirs['id']}", headers=B).json()["status"] == "queued"
        # no key, a wrong key: 401 on every /v1 route, with the one error shape
        for method, path in (("get", "/v1/jobs"), ("get", f"/v1/jobs/{mine['id']}"), ("get", "/v1/models")):
            r = httpx.request(method, f"{url}{path}", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
            assert r.headers["www-authenticate"] == "Bearer"
        # probes stay open; metrics and the docs need a key
        assert (
            httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").status_code == 200
        )
        for path in ("/metrics", "/docs", "/redoc", "/openapi.json"):
            assert httpx.get(f"{url}{path}").status_code == 401, path
            assert httpx.get(f"{url}{path}", headers=A).status_code == 200, path


def test_listing_pages(tmp_path: Path) -> None:
    for url in serve_app(tenants(tmp_path, tenant_max_jobs=50), fake_engines()):
        ids = [
            httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}, headers=A).json()["id"]
            for _ in range(5)
        ]
        seen, before = [], None
        while True:
            page = httpx.get(
                f"{url}/v1/jobs", params={"limit": 2, **({"before": before} if before else {})}, headers=A
            ).json()
            seen += [j["id"] for j in page["data"]]
            if not page["has_more"]:
                break
            before = page["next_before"]
        assert seen == ids[::-1]
        assert httpx.get(f"{url}/v1/jobs", params={"limit": 1000}, headers=A).status_code == 422


def _submit(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}, headers=headers)


def test_queue_bounds_answer_429_with_retry_after_and_store_nothing(tmp_path: Path) -> None:
    settings = tenants(tmp_path, max_queued_jobs=3, tenant_max_jobs=2)
    for url in serve_app(settings, fake_engines()):
        post = partial(_submit, url)
        assert [post(A).status_code for _ in range(3)] == [202, 202, 429]  # the tenant's bound
        refused = post(A)
        assert refused.headers["retry-after"].isdigit() and refused.json()["error"]["type"] == "overloaded"
        assert post(B).status_code == 202  # another tenant still gets in
        assert post(B).status_code == 429  # the queue's bound (3 jobs)
        assert len(httpx.get(f"{url}/v1/jobs", headers=A).json()["data"]) == 2  # refused ones stored nothing
    audio = tenants(tmp_path / "s", max_queued_audio_s=1.5)
    for url in serve_app(audio, fake_engines()):
        first = httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}, headers=A)
        second = httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())}, headers=A)
        assert (first.status_code, second.status_code) == (202, 429)  # 1 s of audio each, 1.5 s allowed


def test_rate_and_in_flight_limits_on_an_injected_clock() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, clock=lambda: now[0])
    limiter.check("t")
    limiter.check("t")
    with pytest.raises(ApiError) as refused:
        limiter.check("t")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    limiter.check("other")  # buckets are per tenant
    now[0] = 0.5  # one token back at 2 per second
    limiter.check("t")
    inflight = InFlight(1, "speech streams")
    give_back = inflight.claim()
    with pytest.raises(ApiError) as busy:
        inflight.claim()
    assert busy.value.status == 429
    give_back()
    give_back()  # once only, however many exit paths call it
    assert inflight.active == 0
    inflight.claim()()  # free again


@pytest.mark.parametrize(
    "body",
    [
        b'{"input": "hi", "speed": NaN}',
        b'{"input": "hi", "speed": Infinity}',
        b'{"input": "hi", "speed": 1e999}',
        b'{"input": "\\ud800 lone surrogate"}',
        b'{"input": "nul \\u0000 inside"}',
        b'{"input": "hi", "speed": 1e308}',
        b'{"input": 42}',
        b'{"input": ["a"]}',
        b'{"input": "hi", "voice": {"x": 1}}',
        b'["input"]',
        b"not json",
        b'{"input": "hi"',
        b"\xff\xfe",
        b'{"input": "hi", "speed": 2}',
        b'{"input": "hi", "voice": "alloy"}',
        b'{"input": "' + b"x" * 5000 + b'"}',
        b'{"input": "hi", "response_format": "mp3"}',
        b'{"input": "   "}',
        b'{"\\udfff": 1, "input": "hi"}',  # a lone surrogate in a key
        b'{"input": "hi", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nesting past the parser
    ],
)
def test_speech_body_fuzz_is_always_4xx_in_the_documented_shape(tmp_path: Path, body: bytes) -> None:
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=0), fake_engines()):
        r = httpx.post(f"{url}/v1/audio/speech", content=body, headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (body[:40], r.status_code, r.text[:200])
        error = r.json()["error"]
        assert set(error) == {"message", "type", "hint"} and error["message"]
        assert len(r.content) < 2000  # the client's value is not echoed back


def test_cross_site_writes_and_unknown_hosts_are_refused(tmp_path: Path) -> None:
    settings = ServiceSettings(job_dir=str(tmp_path), workers=0, allowed_hosts=["127.0.0.1"])
    for url in serve_app(settings, fake_engines()):
        form = {"file": ("a.wav", tone())}
        evil = httpx.post(f"{url}/v1/jobs", files=form, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and evil.json()["error"]["type"] == "forbidden"
        same = httpx.post(f"{url}/v1/jobs", files=form, headers={"Origin": url})
        assert same.status_code == 202
        assert httpx.get(f"{url}/healthz", headers={"Host": "attacker.example"}).status_code == 400


def test_a_stalled_body_is_timed_out(tmp_path: Path) -> None:
    settings = ServiceSettings(job_dir=str(tmp_path), workers=0, body_timeout_s=0.5)
    for url in serve_app(settings, fake_engines()):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(
                b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"input": '
            )
            reply = ""
            while "request_timeout" not in reply:  # headers and body may come in separate segments
                piece = s.recv(4096).decode()
                if not piece:
                    break
                reply += piece
        assert reply.startswith("HTTP/1.1 408") and "request_timeout" in reply


def test_draining_answers_503_with_retry_after(tmp_path: Path) -> None:
    from voxperf.service.app import create_app

    settings = ServiceSettings(job_dir=str(tmp_path), workers=0)
    app = create_app(settings, fake_engines())
    for url in serve_app(settings, fake_engines(), app=app):
        app.state.vox.draining = True  # as the lifespan does on SIGTERM
        r = httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", tone())})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert httpx.post(f"{url}/v1/audio/speech", json={"input": "hi"}).status_code == 503
        assert httpx.get(f"{url}/readyz").status_code == 503
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_settings_precedence_flag_env_pyproject_default(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.voxperf.serve]\nworkers = 3\nstt_spec = "fake"\nmax_duration_s = 30\n')
    env = {"VOXPERF_WORKERS": "5", "VOXPERF_PUBLIC_METRICS": "yes"}
    s = ServiceSettings.load({"workers": None, "stt_spec": None}, env=env, pyproject=pyproject)
    assert (s.workers, s.stt_spec, s.max_duration_s, s.public_metrics) == (5, "fake", 30.0, True)
    s = ServiceSettings.load({"workers": 7}, env=env, pyproject=pyproject)
    assert s.workers == 7 and s.tts_spec == "piper"  # flag > env; untouched settings keep defaults
    for bad_env, needle in (
        ({"VOXPERF_WORKERS": "two"}, "VOXPERF_WORKERS"),
        ({"VOXPERF_MAX_DURATION_S": "nan"}, "VOXPERF_MAX_DURATION_S"),
        ({"VOXPERF_BROKER_URL": "redis://h:6379/0"}, "broker"),
        ({"VOXPERF_BROKER_URL": "amqp://h//"}, "job database"),
        ({"VOXPERF_PUBLIC_METRICS": "maybe"}, "VOXPERF_PUBLIC_METRICS"),
    ):
        with pytest.raises(UsageError, match=needle):
            ServiceSettings.load(env=bad_env, pyproject=tmp_path / "none.toml")
    pyproject.write_text("[tool.voxperf.serve]\nwrokers = 3\n")
    with pytest.raises(UsageError, match="wrokers"):
        ServiceSettings.load(env={}, pyproject=pyproject)


def test_validation_errors_use_the_documented_shape(tmp_path: Path) -> None:
    for url in serve_app(ServiceSettings(job_dir=str(tmp_path), workers=0), fake_engines()):
        r = httpx.post(f"{url}/v1/jobs", data={"level": "raw"})  # no file
        assert r.status_code == 422 and "file" in r.json()["error"]["message"]
        long_model = httpx.post(
            f"{url}/v1/jobs", files={"file": ("a.wav", tone())}, data={"model": "m" * 10_000}
        )
        assert long_model.status_code == 422 and "model" in long_model.json()["error"]["message"]
        assert "detail" not in json.loads(httpx.get(f"{url}/nope").text)


def test_a_transcription_waits_briefly_for_a_slot_and_the_queue_is_bounded() -> None:
    import asyncio

    now = [0.0]
    inflight = InFlight(1, "transcriptions", clock=lambda: now[0])

    async def scenario() -> list[str]:
        events: list[str] = []

        async def request(name: str, wait_s: float, hold: asyncio.Event) -> None:
            try:
                async with inflight.queued_slot(wait_s):
                    events.append(f"{name} runs")
                    await hold.wait()
            except ApiError as exc:
                events.append(f"{name} {exc.status}")

        first_done, second_done = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(request("first", 10, first_done))
        await asyncio.sleep(0)
        second = asyncio.create_task(request("second", 10, second_done))  # waits: the queue has room
        await asyncio.sleep(0.05)
        await request("third", 10, asyncio.Event())  # the queue (as long as the bound, 1) is full
        first_done.set()
        await first
        await asyncio.sleep(0.05)  # the waiter takes the freed slot
        second_done.set()
        await second
        held = asyncio.Event()
        holder = asyncio.create_task(request("fourth", 10, held))
        await asyncio.sleep(0)
        late = asyncio.create_task(request("fifth", 10, asyncio.Event()))
        await asyncio.sleep(0.05)
        now[0] = 11.0  # past the fifth's wait (the clock is injected)
        await late
        held.set()
        await holder
        return events

    events = asyncio.run(scenario())
    assert events == ["first runs", "third 429", "second runs", "fourth runs", "fifth 429"]
    assert (inflight.active, inflight.waiting) == (0, 0)


def test_refused_submissions_leave_no_upload_slot_taken_or_freed(tmp_path: Path) -> None:
    from voxperf.service.app import create_app

    settings = tenants(tmp_path, tenant_max_jobs=1)
    app = create_app(settings, fake_engines())
    for url in serve_app(settings, fake_engines(), app=app):
        for _ in range(6):  # no key: 401 from the endpoint, after the guard let it through
            assert _submit(url, {}).status_code == 401
        assert _submit(url, A).status_code == 202
        assert _submit(url, A).status_code == 429  # the tenant's bound, before the upload was read
        assert app.state.vox.uploading.active == 0
