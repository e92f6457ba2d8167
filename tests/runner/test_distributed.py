"""Runs across torchrun ranks (CPU, gloo): sharding, barriers, the rank-0 merge, a rank that dies."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import fast_config

from samprompt.errors import ConfigError, StageError
from samprompt.runner import load_run_config, run_experiment
from samprompt.runner.distributed import (
    DEFAULT_BARRIER_TIMEOUT,
    ENV_BARRIER_TIMEOUT,
    BarrierError,
    Distributed,
    barrier_timeout,
    current,
    shard,
    shard_of,
)

pytest.importorskip("torch.distributed", reason="torch.distributed is not part of this torch build")

SRC = Path(__file__).resolve().parents[2] / "src"
_MERGED = ("metrics.csv", "prompts.jsonl", "summary.csv", "names.json", "failures.jsonl", "split.json")


def _all_config(data: Path) -> dict[str, Any]:
    return fast_config(data, split={"fractions": [0.5, 0.0, 0.5], "use": "all"})


def _files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in _MERGED}


@pytest.fixture(scope="module")
def reference(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A single-process run of all 12 images (no process group)."""
    out = tmp_path_factory.mktemp("single") / "r"
    res = run_experiment(load_run_config(_all_config(synth_data)), out)
    assert res.computed == 12 and res.complete and not res.failures
    return out


def _ids(out: Path) -> list[str]:
    return list(json.loads((out / "names.json").read_text()))


# ------------------------------------------------------------------------------------------- sharding
def test_shard_of_is_a_stable_sha256_of_the_id() -> None:
    for image_id in ("benign/benign (1)", "é/ü.png", ""):
        expected = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big")
        assert [shard_of(image_id, w) for w in (1, 2, 3, 7)] == [expected % w for w in (1, 2, 3, 7)]
    assert shard_of("benign/benign (1)", 2) == 0 and shard_of("benign/benign (2)", 2) == 1
    with pytest.raises(ValueError, match="world_size"):
        shard_of("a", 0)


def test_shards_partition_the_ids_in_order() -> None:
    ids = [f"img{k:03d}" for k in range(200)]
    parts = [shard(ids, r, 3) for r in range(3)]
    assert sorted(i for p in parts for i in p) == ids and all(p == sorted(p) for p in parts)
    assert all(40 < len(p) < 95 for p in parts)  # a hash, not everything on one rank
    assert shard(ids[::-1], 1, 3) == parts[1][::-1]  # the rank of an id does not depend on the others
    with pytest.raises(ValueError, match=r"rank must be in \[0, 3\)"):
        shard(ids, 3, 3)


def test_single_process_is_rank_0_of_1_without_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", ENV_BARRIER_TIMEOUT):
        monkeypatch.delenv(name, raising=False)
    d = current("cpu", 12.0)
    assert (d.rank, d.world_size, d.enabled, d.is_main, d.group, d.timeout) == (0, 1, False, True, None, 12.0)
    assert d.shard(["b", "a"]) == ["b", "a"] and d.gather("x", 5) == [5]
    d.barrier("x")  # free: no group
    assert Distributed(rank=1, world_size=2).shard(["benign/benign (1)", "benign/benign (2)"]) == [
        "benign/benign (2)"]


def test_single_process_ignores_the_timeout_variable_but_not_a_bad_option(
        monkeypatch: pytest.MonkeyPatch, synth_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from samprompt.cli import main

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv(ENV_BARRIER_TIMEOUT, "soon")  # read only by ranks of a torchrun run
    assert current("cpu").world_size == 1
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(fast_config(synth_data)))
    assert main(["--no-progress", "run", str(cfg), "--out", str(tmp_path / "r"), "--barrier-timeout", "-5"]) == 2
    assert "error: --barrier-timeout: expected seconds (a positive number), got -5.0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_barrier_timeout_from_argument_environment_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BARRIER_TIMEOUT, raising=False)
    assert barrier_timeout() == DEFAULT_BARRIER_TIMEOUT
    monkeypatch.setenv(ENV_BARRIER_TIMEOUT, "90")
    assert barrier_timeout() == 90.0 and barrier_timeout(5) == 5.0
    monkeypatch.setenv(ENV_BARRIER_TIMEOUT, "soon")
    with pytest.raises(ConfigError, match=r"\$SAMPROMPT_BARRIER_TIMEOUT: .*'soon'"):
        barrier_timeout()
    with pytest.raises(ConfigError, match="--barrier-timeout: .*-1"):
        barrier_timeout(-1)


def test_barrier_error_names_stage_and_rank_and_pickles() -> None:
    err = BarrierError("classifier", 1, 4, 30.0, "Connection closed by peer")
    assert isinstance(err, StageError) and err.stage == "classifier" and err.rank == 1
    assert "rank 1 of 4 at barrier 'classifier': Connection closed by peer" in str(err)
    assert "30 s" in str(err) and "--barrier-timeout" in str(err)
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.stage, back.world_size) == (BarrierError, str(err), "classifier", 4)


# --------------------------------------------------------------------------------------- two ranks
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_torchrun_two_ranks_equal_a_single_process_run(synth_data: Path, reference: Path, tmp_path: Path) -> None:
    ids = _ids(reference)
    assert shard(ids, 0, 2) and shard(ids, 1, 2)  # both ranks have images to process
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(_all_config(synth_data)))
    out = tmp_path / "two"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "samprompt", "--no-progress", "run", str(cfg), "--out", str(out),
           "--barrier-timeout", "60"]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("images: 12 of 12 finished (12 computed now)") == 2  # both ranks see the total
    assert _files(out) == _files(reference)
    assert len(list((out / "records").glob("*.json"))) == 12
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(i["computed"], i["world_size"]) for i in manifest["invocations"]] == [(12, 2)]
    assert (out / "report.html").stat().st_size > 0 and (out / "train_result.json").exists()


def _rank_main(rank: int, port: int, cfg: dict[str, Any], out: str, result: str, die_after: int | None) -> None:
    """One spawned rank: run, and (rank 1) die without cleanup after ``die_after`` finished images."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    seen: list[str] = []

    def hook(image_id: str) -> None:
        seen.append(image_id)
        if rank == 1 and len(seen) == die_after:
            os._exit(3)

    try:
        run_experiment(load_run_config(cfg), out, on_record=hook, barrier_timeout=30)
    except BarrierError as exc:
        Path(result).write_text(json.dumps({"stage": exc.stage, "rank": exc.rank, "message": str(exc),
                                            "done": seen}))
        os._exit(1)
    Path(result).write_text(json.dumps({"done": seen}))


def _spawn(target: Any, args: list[tuple[Any, ...]]) -> list[int | None]:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    return [p.exitcode for p in procs]


def test_a_rank_that_dies_loses_only_its_unfinished_images(synth_data: Path, reference: Path,
                                                           tmp_path: Path) -> None:
    cfg, out = _all_config(synth_data), tmp_path / "killed"
    port = _free_port()
    codes = _spawn(_rank_main, [(r, port, cfg, str(out), str(tmp_path / f"rank{r}.json"), 1) for r in range(2)])
    assert codes == [1, 3]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    assert (rank0["stage"], rank0["rank"]) == ("images", 0) and "rank 0 of 2 at barrier 'images'" in rank0["message"]
    ids = _ids(reference)
    finished = {json.loads(p.read_text())["image"] for p in (out / "records").glob("*.json")}
    assert set(rank0["done"]) == set(shard(ids, 0, 2))  # rank 0 finished its whole shard
    lost = set(shard(ids, 1, 2)) - finished
    assert len(finished) == len(shard(ids, 0, 2)) + 1 and len(lost) == len(shard(ids, 1, 2)) - 1 > 0
    assert not (out / "metrics.csv").exists()  # no merge without every rank

    again: list[str] = []  # the same command with another world size (1) finishes the run
    res = run_experiment(load_run_config(cfg), out, on_record=again.append)
    assert set(again) == lost and res.computed == len(lost) and res.complete
    assert _files(out) == _files(reference)


def test_per_image_failures_of_every_rank_are_merged(synth_data: Path, reference: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    split = json.loads((reference / "split.json").read_text())
    ids = _ids(reference)
    test_ids = [i for i in ids if i not in set(split["train"])]  # the training does not read these
    broken = [next(i for i in test_ids if shard_of(i, 2) == r) for r in (0, 1)]
    for image_id in broken:  # truncated PNGs: a "load" failure each, one per rank
        path = data / f"{image_id}.png"
        path.write_bytes(path.read_bytes()[:120])
    cfg, out = _all_config(data), tmp_path / "two"
    port = _free_port()
    codes = _spawn(_rank_main, [(r, port, cfg, str(out), str(tmp_path / f"rank{r}.json"), None) for r in range(2)])
    assert codes == [0, 0]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted(f["image"] for f in failures) == sorted(broken) and {f["stage"] for f in failures} == {"load"}
    rows = (out / "metrics.csv").read_text().splitlines()
    expected = [r for r in (reference / "metrics.csv").read_text().splitlines()
                if not any(r.startswith(f"{i},") for i in broken)]
    assert rows == expected and len(rows) < len((reference / "metrics.csv").read_text().splitlines())


def _late_rank(rank: int, port: int, result: str) -> None:
    """Rank 1 reaches the barrier 5 s late; the timeout is 2 s."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    d = current("cpu", 2.0)
    if rank == 1:
        time.sleep(5)
    try:
        d.barrier("classifier")
    except BarrierError as exc:
        Path(result).write_text(json.dumps({"stage": exc.stage, "rank": exc.rank, "message": str(exc)}))
        os._exit(1)
    os._exit(0)


def test_a_late_rank_is_a_barrier_error_naming_stage_and_rank(tmp_path: Path) -> None:
    port = _free_port()
    codes = _spawn(_late_rank, [(r, port, str(tmp_path / f"rank{r}.json")) for r in range(2)])
    assert codes[0] == 1
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    assert (rank0["stage"], rank0["rank"]) == ("classifier", 0)
    assert "rank 0 of 2 at barrier 'classifier'" in rank0["message"] and "Ranks 1 failed to pass" in rank0["message"]
    assert "barrier timeout of 2 s" in rank0["message"]


def _own_group_rank(rank: int, port: int, result: str) -> None:
    """A caller that makes its own process group (no torchrun variables) before asking for :func:`current`."""
    import torch.distributed as tdist

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(name, None)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    d = current("cpu", 30)
    ids = [f"img{k}" for k in range(10)]
    Path(result).write_text(json.dumps({"rank": d.rank, "world": d.world_size, "gather": d.gather("x", [rank]),
                                        "shard": d.shard(ids)}))
    tdist.destroy_process_group()  # the caller's group: the caller ends it


def test_a_process_group_made_by_the_caller_is_used(tmp_path: Path) -> None:
    port = _free_port()
    assert _spawn(_own_group_rank, [(r, port, str(tmp_path / f"rank{r}.json")) for r in range(2)]) == [0, 0]
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    ids = [f"img{k}" for k in range(10)]
    for r in range(2):
        assert got[r] == {"rank": r, "world": 2, "gather": [[0], [1]], "shard": shard(ids, r, 2)}
