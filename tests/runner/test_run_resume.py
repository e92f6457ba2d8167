"""Resuming: an interrupted run finishes the missing images only and ends identical to an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runner_helpers import fast_config

from samprompt.errors import ConfigError
from samprompt.runner import load_run_config, run_experiment


class _Interrupt(Exception):
    pass


def _stopper(after: int) -> object:
    seen: list[str] = []

    def hook(image_id: str) -> None:
        seen.append(image_id)
        if len(seen) == after:
            raise _Interrupt(image_id)

    return hook


def _files(out: Path) -> dict[str, bytes]:
    keep = ("metrics.csv", "prompts.jsonl", "summary.csv", "summary.md", "names.json", "split.json")
    return {name: (out / name).read_bytes() for name in keep}


def test_interrupted_run_resumes_to_the_same_result(synth_data: Path, tmp_path: Path) -> None:
    cfg = load_run_config(fast_config(synth_data, split={"fractions": [0.5, 0.0, 0.5], "use": "all"}))
    full = run_experiment(cfg, tmp_path / "full")
    assert full.computed == 12 and full.complete

    out = tmp_path / "resumed"
    with pytest.raises(_Interrupt):  # batch size 3: interrupted in the middle of the second batch
        run_experiment(cfg, out, on_record=_stopper(4))  # type: ignore[arg-type]
    first = sorted((out / "records").glob("*.json"))
    assert len(first) == 4 and not (out / "metrics.csv").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in first}
    mask_stamps = {p: p.stat().st_mtime_ns for p in (out / "masks").rglob("*.png")}

    again: list[str] = []
    res = run_experiment(cfg, out, on_record=again.append)
    assert res.computed == 8 and len(again) == 8 and res.complete and res.done == 12
    for p in first:  # finished images were neither recomputed nor rewritten
        assert p.stat().st_mtime_ns == stamps[p.name]
    for p, t in mask_stamps.items():
        assert p.stat().st_mtime_ns == t
    assert _files(out) == _files(tmp_path / "full")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["computed"] for i in manifest["invocations"]] == [8]  # the interrupted call never finished

    # a third call finds nothing to do
    res3 = run_experiment(cfg, out)
    assert res3.computed == 0 and _files(out) == _files(tmp_path / "full")


def test_limit_then_complete(synth_data: Path, tmp_path: Path, finished_run: tuple[Path, object]) -> None:
    base = fast_config(synth_data)
    out = tmp_path / "lim"
    part = run_experiment(load_run_config({**base, "limit": 2}), out)
    assert part.computed == 2 and part.total == 2 and not part.complete and part.split_total == 6
    rest = run_experiment(load_run_config(base), out)
    assert rest.computed == 4 and rest.complete
    assert (out / "metrics.csv").read_bytes() == (finished_run[0] / "metrics.csv").read_bytes()


def test_changed_training_is_refused_unless_forced(synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    base = fast_config(synth_data, limit=1)
    run_experiment(load_run_config(base), out)
    train = {**base["classifier"]["train"], "epochs": 2}
    changed = dict(base, classifier={**base["classifier"], "train": train})
    with pytest.raises(ConfigError, match=r"different config.*classifier\.train\.epochs.*classifier stage.*--force"):
        run_experiment(load_run_config(changed), out)
    (out / "unrelated.txt").write_text("keep me")
    res = run_experiment(load_run_config(changed), out, force=True)
    assert res.computed == 1
    assert json.loads((out / "config.json").read_text())["classifier"]["train"]["epochs"] == 2
    assert (out / "unrelated.txt").read_text() == "keep me"  # --force removes only the run's own files


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("change", [
    {"masker": {"name": "threshold", "params": {"value": 0.7}}},
    {"prompts": [{"name": "box", "params": {"margin": 0}}, {"name": "max_point"}]},
    {"segmenter": {"name": "classical", "params": {"work_size": 40}}},
])
def test_post_classifier_change_reuses_the_classifier(synth_data: Path, tmp_path: Path,
                                                      change: dict[str, object]) -> None:
    """Prompts, masker or segmenter changed: the trained classifier is reused (same bytes), the images are
    recomputed with the new pipeline, and the result equals a fresh run of the new config."""
    out = tmp_path / "r"
    base = fast_config(synth_data)
    first = run_experiment(load_run_config(base), out)
    ckpt, split = _sha(out / "classifier.pt"), (out / "split.json").read_bytes()
    mtime = (out / "classifier.pt").stat().st_mtime_ns
    changed = dict(base, pipeline={**base["pipeline"], **change})
    res = run_experiment(load_run_config(changed), out)
    assert res.computed == first.computed and res.complete
    assert _sha(out / "classifier.pt") == ckpt and (out / "classifier.pt").stat().st_mtime_ns == mtime
    assert (out / "split.json").read_bytes() == split
    assert json.loads((out / "config.json").read_text())["pipeline"] == load_run_config(changed).identity()["pipeline"]
    # the same numbers as a run made from scratch with the new config and the same classifier
    fresh_cfg = dict(changed, classifier={"checkpoint": str(out / "classifier.pt")})
    fresh = run_experiment(load_run_config(fresh_cfg), tmp_path / "fresh")
    assert fresh.computed == res.computed
    assert (out / "metrics.csv").read_bytes() == (tmp_path / "fresh" / "metrics.csv").read_bytes()


def test_report_only_change_keeps_the_records(synth_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    base = fast_config(synth_data)
    first = run_experiment(load_run_config(base), out)
    res = run_experiment(load_run_config(dict(base, report={"panels": 1, "gallery": 1, "thumb": 48},
                                              description="now described")), out)
    assert first.computed > 0 and res.computed == 0 and res.complete
    assert "now described" in (out / "report.html").read_text()


def test_moved_data_resumes_and_changed_data_is_refused(synth_data: Path, tmp_path: Path) -> None:
    """The data folder's path is not part of the run's identity; its fingerprint (content) is."""
    import shutil

    from samprompt.errors import DataError

    first = tmp_path / "data-a"
    shutil.copytree(synth_data, first)
    out = tmp_path / "r"
    run_experiment(load_run_config(fast_config(first, limit=2)), out)
    moved = tmp_path / "elsewhere" / "data-b"
    shutil.move(str(first), moved)
    res = run_experiment(load_run_config(fast_config(moved, limit=2)), out)
    assert res.computed == 0  # the two finished images are not recomputed
    assert json.loads((out / "config.json").read_text())["data"]["path"] == str(moved)
    assert json.loads((out / "manifest.json").read_text())["data"]["path"] == str(moved)
    # same path, different bytes: refused (DataError names the folder), whatever the path
    victim = next(p for p in sorted(moved.rglob("*.png")) if "_mask" not in p.name)
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(DataError, match="changed since run folder"):
        run_experiment(load_run_config(fast_config(moved, limit=2)), out)


def test_a_run_made_before_a_new_setting_is_resumed(synth_data: Path, tmp_path: Path) -> None:
    """A run folder whose config.json predates a setting added at its default (here
    ``classifier.train.recipe`` and ``channels_last``) is the same run, not a changed one."""
    out = tmp_path / "r"
    base = fast_config(synth_data)
    first = run_experiment(load_run_config(base), out)
    stored = json.loads((out / "config.json").read_text())
    for key in ("recipe", "channels_last"):
        del stored["classifier"]["train"][key]
    (out / "config.json").write_text(json.dumps(stored))
    again = run_experiment(load_run_config(base), out)
    assert first.computed == 6 and again.computed == 0 and again.complete
    # a stored value that differs from today's default is still a change
    stored["classifier"]["train"]["epochs"] = 99
    (out / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match=r"classifier\.train\.epochs.*classifier stage"):
        run_experiment(load_run_config(base), out)
