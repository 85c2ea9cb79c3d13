"""Crash safety outside training: every file appears whole or not at all, a kill at any point
of the metrics cache, `embed --all-checkpoints` or the report's folder swap loses nothing, and
the next command tidies what the kill left. The metrics cache waits for a live trainer.

A kill is ``die()`` (``os._exit``) at a fault point in a forked child: no cleanup runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import KILLED, die, run_forked, tiny_config
from matplotlib.figure import Figure
from PIL import Image
from typer.testing import CliRunner

from cl_analyze.cli import app
from cl_analyze.metrics import cache
from cl_analyze.metrics.cache import export_metrics_csv, load_metrics
from cl_analyze.report import ReportOptions, build_report
from cl_analyze.store import RunStore, RunWriter, lock_holder, run_lock
from cl_analyze.training import embed as embedding
from cl_analyze.training.fit import fit
from cl_analyze.viz import animate
from cl_analyze.viz.runs import load_plot_run
from cl_analyze.viz.style import figure_style, save_figure

CLASSES = ("a", "b", "c")


def write_store(run: Path, epochs: int = 3) -> Path:
    """A closed store (plain h5py opens it read-write) of 3 classes on a circle."""
    labels = np.arange(30) % 3
    angles = labels * 2 * np.pi / 3
    with RunWriter.create(
        run / "run.h5",
        dataset="toy",
        class_names=CLASSES,
        feat_dim=2,
        splits={"train": (labels, np.arange(30)), "test": (labels, np.arange(30))},
        history_names=("test_accuracy", "lr"),
        with_centers=False,
    ) as writer:
        for epoch in range(epochs):
            noise = np.random.default_rng(epoch).normal(0, 0.3, (30, 2))
            points = (1 + epoch) * np.stack([np.cos(angles), np.sin(angles)], 1) + noise
            writer.append_epoch(
                epoch,
                scalars={"test_accuracy": 0.5 + 0.1 * epoch, "lr": 0.01},
                features={"train": points, "test": points},
                predictions={"train": labels, "test": labels},
            )
    return run


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def has_metrics_cache(run: Path) -> bool:
    with h5py.File(run / "run.h5", "r") as handle:
        return "metrics" in handle


# --- the metrics cache waits for a live trainer (its guard, not HDF5's refusal) ---------------


def test_metrics_are_not_cached_while_a_trainer_holds_the_run(tmp_path: Path) -> None:
    run = write_store(tmp_path / "run")
    h5py.File(run / "run.h5", "r+").close()  # the premise: the file itself opens for writing
    with run_lock(run, "train"):  # this process stands in for a live trainer
        assert lock_holder(run / "run.lock") == (os.getpid(), "train")
        during = load_metrics(run)
        assert sorted(during.epoch.unique()) == [0, 1, 2]
    assert not has_metrics_cache(run)  # only the lock kept the cache out
    after = load_metrics(run)  # the trainer is gone: now it is cached
    assert has_metrics_cache(run)
    pd.testing.assert_frame_equal(during, after)


# --- kills in the metrics cache's swap ---------------------------------------------------------


@pytest.mark.parametrize("fault", ["while copying", "before the rename"])
def test_a_kill_during_the_metrics_cache_swap_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    run = write_store(tmp_path / "run")
    original = digest(run / "run.h5")

    def killed_mid_swap() -> None:
        if fault == "while copying":

            def half_copy(source: Path, target: Path) -> None:
                data = Path(source).read_bytes()
                Path(target).write_bytes(data[: len(data) // 2])
                die()

            monkeypatch.setattr(cache.shutil, "copyfile", half_copy)
        else:
            add = cache._add_to_cache

            def add_then_die(*args: object, **kwargs: object) -> None:
                add(*args, **kwargs)  # type: ignore[arg-type]
                die()  # the copy holds the cache; the rename never happens

            monkeypatch.setattr(cache, "_add_to_cache", add_then_die)
        load_metrics(run)

    assert run_forked(killed_mid_swap) == KILLED
    assert digest(run / "run.h5") == original  # the store was never touched
    assert (run / "run.partial.h5").exists()  # what the kill left
    assert lock_holder(run / "run.lock") is None  # the dead holder's lock freed itself
    frame = load_metrics(run)  # the next command caches over the stale copy
    assert has_metrics_cache(run) and not (run / "run.partial.h5").exists()
    with RunStore(run) as store:
        assert store.rows == 3
    pd.testing.assert_frame_equal(frame, load_metrics(run))


# --- kills in `embed --all-checkpoints` --------------------------------------------------------


@pytest.fixture(scope="module")
def no_embed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "no-embed"
    config = tiny_config(loss="center", epochs=1, embed=False, keep_checkpoints="all")
    fit(config, run)
    return run


def test_a_kill_during_embed_all_checkpoints_loses_nothing(
    no_embed_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    shutil.copytree(no_embed_run, run)
    original = digest(run / "run.h5")

    def killed_at_the_second_checkpoint() -> None:
        passes = []
        embed_split = embedding.embed_split

        def dying_embed_split(*args: object, **kwargs: object) -> object:
            passes.append(1)
            if len(passes) == 2:
                die()
            return embed_split(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(embedding, "embed_split", dying_embed_split)
        CliRunner().invoke(app, ["embed", str(run), "--all-checkpoints", "--quiet"])

    assert run_forked(killed_at_the_second_checkpoint) == KILLED
    assert digest(run / "run.h5") == original
    assert (run / "run.partial.h5").exists() and lock_holder(run / "run.lock") is None
    with RunStore(run) as store:
        assert not store.has_features("train")
    result = CliRunner().invoke(app, ["embed", str(run), "--all-checkpoints", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not (run / "run.partial.h5").exists()
    with RunStore(run) as store:
        assert store.features("train").shape == (2, tiny_config().limit_train, 2)


# --- kills in the report's folder swap ---------------------------------------------------------


def report_files(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): digest(path) for path in folder.rglob("*") if path.is_file()
    }


@pytest.mark.parametrize("fault", ["while building", "between the two renames"])
def test_a_kill_during_the_report_swap_is_tidied_by_the_next_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    run = write_store(tmp_path / "runs" / "toy")
    out = tmp_path / "reports" / "toy"
    options = ReportOptions(out=out, figures=False)
    build_report([run], options)
    previous = report_files(out)

    def killed() -> None:
        from cl_analyze.report import build

        if fault == "while building":

            def dying_markdown(*args: object) -> str:
                die()
                return ""

            monkeypatch.setattr(build, "render_markdown", dying_markdown)
        else:
            replace = os.replace
            calls = []

            def dying_replace(source: object, target: object) -> None:
                calls.append(target)
                if len(calls) == 2:  # the old report moved aside, the new one not yet in
                    die()
                replace(source, target)  # type: ignore[arg-type]

            monkeypatch.setattr(build.os, "replace", dying_replace)
        build_report([run], options)

    assert run_forked(killed) == KILLED
    leftovers = sorted(p.name for p in out.parent.iterdir() if p.name != "toy")
    if fault == "while building":
        assert report_files(out) == previous  # the previous report stands, untouched
        assert [name.split("-")[0] for name in leftovers] == [".toy.building"]
    else:
        assert not out.exists()  # the kill's window: only the two hidden folders hold reports
        assert sorted(name.split("-")[0] for name in leftovers) == [".toy.building", ".toy.old"]
    build_report([run], options)
    assert [p.name for p in out.parent.iterdir()] == ["toy"]  # every leftover tidied
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][0]["name"] == "toy" and (out / "index.html").is_file()


def test_a_previous_report_comes_back_when_the_new_one_never_arrived(tmp_path: Path) -> None:
    """The swap's window, as the kill above leaves it, repaired before anything is built."""
    from cl_analyze.report.build import _recover_interrupted_builds

    out = tmp_path / "toy"
    dead = 2**22 + 12345  # above Linux's default pid_max: no process has it
    old = tmp_path / f".toy.old-{dead}"
    old.mkdir()
    (old / "index.html").write_text("the previous report")
    building = tmp_path / f".toy.building-{dead}-x1y2"
    building.mkdir()
    live = tmp_path / f".toy.building-{os.getpid()}-a1b2"  # a report being built right now
    live.mkdir()
    mine = tmp_path / ".toy.notes-1"  # not a name the report uses
    mine.mkdir()
    _recover_interrupted_builds(out)
    assert (out / "index.html").read_text() == "the previous report"
    assert not old.exists() and not building.exists()
    assert live.is_dir() and mine.is_dir()


# --- files written whole: figures, animations, the metrics CSV ---------------------------------


def test_a_kill_while_saving_a_figure_leaves_the_previous_one(tmp_path: Path) -> None:
    stem = tmp_path / "accuracy"
    stem.with_suffix(".png").write_bytes(b"the previous figure")
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [1, 0])

    def killed_before_the_rename() -> None:
        def dying_replace(*args: object) -> None:
            die()

        os.replace = dying_replace  # type: ignore[assignment]  # the child's only
        save_figure(figure, stem, figure_style("paper"), ("png",))

    assert run_forked(killed_before_the_rename) == KILLED
    assert stem.with_suffix(".png").read_bytes() == b"the previous figure"
    partial = tmp_path / "accuracy.partial.png"
    assert partial.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # complete, but not at the path
    written = save_figure(figure, stem, figure_style("paper"), ("png", "pdf"))
    assert [path.name for path in written] == ["accuracy.png", "accuracy.pdf"]
    with Image.open(stem.with_suffix(".png")) as image:
        image.verify()
    assert stem.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert not partial.exists()  # the next save wrote over it and renamed it into place


def test_an_interrupted_animation_leaves_no_file_and_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = load_plot_run(write_store(tmp_path / "run"), max_points=None)
    stem = tmp_path / "animation"
    stem.with_suffix(".gif").write_bytes(b"the previous animation")
    render = animate.FrameRenderer.render

    def failing_render(self: animate.FrameRenderer, epoch: int) -> np.ndarray:
        if epoch == 2:
            raise KeyboardInterrupt  # Ctrl-C at the third frame
        return render(self, epoch)

    monkeypatch.setattr(animate.FrameRenderer, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        animate.write_animation([run], stem, splits=("test",), style=figure_style("paper"))
    assert stem.with_suffix(".gif").read_bytes() == b"the previous animation"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["animation.gif", "run"]
    monkeypatch.setattr(animate.FrameRenderer, "render", render)
    written = animate.write_animation([run], stem, splits=("test",), style=figure_style("paper"))
    with Image.open(written[0]) as gif:
        assert gif.n_frames == 3
    assert not any("partial" in p.name for p in tmp_path.iterdir())


def test_a_kill_while_writing_an_animation_leaves_no_file(tmp_path: Path) -> None:
    run = load_plot_run(write_store(tmp_path / "run"), max_points=None)
    stem = tmp_path / "animation"

    def killed_while_encoding() -> None:
        save = Image.Image.save

        def dying_save(self: Image.Image, target: object, *args: object, **kwargs: object) -> None:
            save(self, target, *args, **kwargs)  # type: ignore[arg-type]
            die()  # the GIF is written, the rename not done

        Image.Image.save = dying_save  # type: ignore[method-assign]  # the child's only
        animate.write_animation([run], stem, splits=("test",), style=figure_style("paper"))

    assert run_forked(killed_while_encoding) == KILLED
    assert not stem.with_suffix(".gif").exists() and not stem.with_suffix(".mp4").exists()


def test_a_kill_while_exporting_the_metrics_csv_leaves_no_file(tmp_path: Path) -> None:
    run = write_store(tmp_path / "run")
    target = tmp_path / "out" / "metrics.csv"

    def killed_mid_write() -> None:
        def dying_to_csv(self: pd.DataFrame, path: object, **kwargs: object) -> None:
            Path(str(path)).write_text("epoch,split,metric,class,value\n0,test,")
            die()

        pd.DataFrame.to_csv = dying_to_csv  # type: ignore[assignment,method-assign]
        export_metrics_csv(run, target)

    assert run_forked(killed_mid_write) == KILLED
    assert not target.exists()  # never a truncated file at the final name
    assert export_metrics_csv(run, target) == target
    back = pd.read_csv(target, keep_default_na=False)
    assert (
        len(back) == len(load_metrics(run)) and not (target.parent / "metrics.partial.csv").exists()
    )
