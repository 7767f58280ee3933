"""``voxperf store`` and ``voxperf bench --store`` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from voxperf.bench.schema import dump_result
from voxperf.errors import ExitCode

from .conftest import commit, git, make_result, run_cli


def test_put_get_ls_baseline_verify(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    c1 = commit(repo, "one")
    c2 = commit(repo, "two")
    store = str(tmp_path / "store")
    result_file = tmp_path / "r.json"
    dump_result(make_result(c1), result_file)

    put = run_cli("store", "put", str(result_file), "--store", store, "--json")
    assert put.returncode == 0, put.stderr
    assert sorted(p["status"] for p in json.loads(put.stdout)) == ["written", "written"]
    again = run_cli("store", "put", str(result_file), "--store", store)
    assert again.returncode == 0 and "identical" in again.stdout

    got = run_cli("store", "get", c1[:8], "--repo", str(repo), "--store", store)
    assert got.returncode == 0, got.stderr
    assert list(json.loads(got.stdout)["lanes"]) == ["provider"]

    ls = run_cli("store", "ls", "--store", store, "--json")
    assert {r["lane"] for r in json.loads(ls.stdout)} == {"provider", "codepath"}

    base = run_cli("store", "baseline", "--base", c2, "--repo", str(repo), "--store", store, "--json")
    answer = json.loads(base.stdout)
    assert (answer["mode"], answer["commit"], answer["distance"]) == ("nearest_ancestor", c1, 1)

    assert run_cli("store", "verify", "--store", store).returncode == 0


def test_conflict_exit_code_and_message(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    dump_result(make_result("a" * 40, stt=1.0), a)
    dump_result(make_result("a" * 40, stt=2.0), b)
    assert run_cli("store", "put", str(a), "--store", store).returncode == 0
    proc = run_cli("store", "put", str(b), "--store", store)
    assert proc.returncode == ExitCode.CONFLICT
    assert "append-only" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_inputs(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    proc = run_cli("store", "put", str(bad), "--store", store)
    assert proc.returncode == ExitCode.USAGE and "not valid JSON" in proc.stderr
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schemaVersion": 9}))
    proc = run_cli("store", "put", str(newer), "--store", store)
    assert proc.returncode == ExitCode.USAGE and "upgrade" in proc.stderr
    proc = run_cli("store", "get", "nothex", "--repo", str(tmp_path), "--store", store)
    assert proc.returncode == ExitCode.USAGE and "Traceback" not in proc.stderr
    proc = run_cli("store", "get", "a" * 40, "--lane", "../../x", "--store", store)
    assert proc.returncode == ExitCode.USAGE and "invalid lane" in proc.stderr


def test_bench_store_refuses_dirty_tree_but_keeps_result(tmp_path: Path, tone_dir: Path) -> None:
    repo = tmp_path / "proj"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "app.py").write_text("x = 1\n")
    git(repo, "add", "app.py")
    c = commit(repo, "app")
    (repo / "pyproject.toml").write_text('[tool.voxperf]\nstore = "perf-store"\n')  # untracked: still clean
    args = [
        "bench",
        "--lane",
        "codepath",
        "--pipeline",
        "dictation",
        "--fixtures",
        str(tone_dir),
        "--iterations",
        "1",
        "--warmup",
        "0",
        "-q",
        "--store",
    ]
    clean = run_cli(*args, "-o", str(tmp_path / "clean.json"), cwd=repo)
    assert clean.returncode == 0, clean.stderr
    assert (repo / "perf-store" / "audit" / f"{c}-codepath.json").is_file()

    (repo / "app.py").write_text("x = 2\n")
    dirty = run_cli(*args, "-o", str(tmp_path / "dirty.json"), cwd=repo)
    assert dirty.returncode == ExitCode.USAGE and "dirty" in dirty.stderr
    assert (tmp_path / "dirty.json").is_file()  # the measured result is not lost
    allowed = run_cli(*args, "--allow-dirty", "--pr", "5", "-o", str(tmp_path / "d2.json"), cwd=repo)
    assert allowed.returncode == 0, allowed.stderr
    assert (repo / "perf-store" / "audit" / "pr" / "5" / f"{c}-codepath.json").is_file()


def test_git_store_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    bare = tmp_path / "perf.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    result_file = tmp_path / "r.json"
    dump_result(make_result("c" * 40), result_file)
    env_cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(env_cache))  # the managed clone lives here
    location = f"git+{bare}"
    put = run_cli("store", "put", str(result_file), "--pr", "12", "--store", location)
    assert put.returncode == 0, put.stderr
    files = git(bare, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert sorted(files) == [f"audit/pr/12/{'c' * 40}-codepath.json", f"audit/pr/12/{'c' * 40}.json"]
    ls = run_cli("store", "ls", "--pr", "12", "--store", location, "--json")
    assert len(json.loads(ls.stdout)) == 2
    gone = run_cli("store", "put", str(result_file), "--store", f"git+{tmp_path / 'nowhere.git'}")
    assert gone.returncode == ExitCode.PROVIDER and "Traceback" not in gone.stderr
