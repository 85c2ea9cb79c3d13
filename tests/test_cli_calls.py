"""What each command hands its core function, fastapi-cli style: the core call is patched and the
test asserts the exact arguments for the defaults, options, environment variables and --config."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import run_main
from typer.testing import CliRunner

from cl_analyze import cli, cli_train
from cl_analyze.config import TrainConfig
from cl_analyze.progress import Reporter

runner = CliRunner()
# Each test states the variables it means; none leak in from the machine running the tests.
NO_ENV = {"CL_ANALYZE_ARTIFACTS": None, "CL_ANALYZE_DATA": None, "CL_ANALYZE_DEVICE": None}


class Recorder:
    """Stands in for a core function: records its arguments, returns ``result``."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.result

    @property
    def only_call(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


def invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(cli.app, args, env={**NO_ENV, **(env or {})}, prog_name="cl-analyze")
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture
def fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Recorder:
    monkeypatch.chdir(tmp_path)
    recorder = Recorder(tmp_path / "run.h5")
    monkeypatch.setattr("cl_analyze.training.fit.fit", recorder)
    return recorder


def fit_arguments(fit: Recorder) -> tuple[TrainConfig, Path, dict[str, Any]]:
    """fit's config, run folder and other keyword arguments (its reporter checked apart)."""
    (config, run_dir), kwargs = fit.only_call
    others = {key: value for key, value in kwargs.items() if key != "reporter"}
    assert isinstance(kwargs["reporter"], Reporter)
    return config, run_dir, others


# --- train ---


def test_train_defaults(fit: Recorder) -> None:
    invoke(["train"])
    config, run_dir, kwargs = fit_arguments(fit)
    assert config == TrainConfig()
    assert run_dir == Path("artifacts/run1") and run_dir.is_dir()  # claimed for this run
    assert kwargs == {"resume": False, "overwrite": False}


def test_train_options_override_defaults(fit: Recorder) -> None:
    invoke(
        shlex.split(
            "train --dataset mnist-5k --limit-train 64 --loss softmax --center-update paper"
            " --epochs 3 --lr 0.05 --weight-decay 0 --no-embed --precision bf16"
            " --keep-checkpoints all --deterministic --out here --overwrite --quiet"
        )
    )
    config, run_dir, kwargs = fit_arguments(fit)
    assert config == TrainConfig(
        dataset="mnist-5k",
        limit_train=64,
        loss="softmax",
        center_update="paper",
        epochs=3,
        lr=0.05,
        weight_decay=0.0,
        embed=False,
        precision="bf16",
        keep_checkpoints="all",
        deterministic=True,
    )
    assert run_dir == Path("here") and kwargs == {"resume": False, "overwrite": True}
    assert fit.calls[0][1]["reporter"].quiet


def test_train_environment_variables(fit: Recorder, tmp_path: Path) -> None:
    env = {
        "CL_ANALYZE_ARTIFACTS": str(tmp_path / "runs"),
        "CL_ANALYZE_DATA": "/datasets/mnist",
        "CL_ANALYZE_DEVICE": "cpu",
    }
    invoke(["train"], env)
    config, run_dir, _ = fit_arguments(fit)
    assert config == TrainConfig(data_dir="/datasets/mnist", device="cpu")
    assert run_dir == tmp_path / "runs" / "run1"


def test_command_line_beats_environment(fit: Recorder) -> None:
    invoke(["train", "--device", "auto", "--data-dir", "here"], {"CL_ANALYZE_DEVICE": "cpu"})
    config, _, _ = fit_arguments(fit)
    assert config == TrainConfig(device="auto", data_dir="here")


def write_config(folder: Path, config: TrainConfig) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(config.to_json())
    return folder


# Trained on another machine: its GPU and its data folder.
MACHINE = {"device": "cuda:1", "data_dir": "/elsewhere/data", "download": False}
STORED = TrainConfig(
    dataset="fashion-mnist", epochs=30, lr=0.01, center_weight=0.1, seed=7, **MACHINE
)
# Trained again here: everything but the per-machine options, which stay this machine's.
REPLAYED = STORED.replace(**{name: getattr(TrainConfig(), name) for name in MACHINE})


def test_config_replays_a_stored_run(fit: Recorder, tmp_path: Path) -> None:
    run = write_config(tmp_path / "old", STORED)
    invoke(["train", "--config", str(run)])  # the folder
    invoke(["train", "--config", str(run / "config.json")])  # or its file
    assert [call[0][0] for call in fit.calls] == [REPLAYED, REPLAYED]


def test_command_line_and_environment_override_config(fit: Recorder, tmp_path: Path) -> None:
    run = write_config(tmp_path / "old", STORED)
    invoke(
        ["train", "--config", str(run), "--epochs", "5", "--no-download"],
        {"CL_ANALYZE_DEVICE": "cpu", "CL_ANALYZE_DATA": "/here/data"},
    )
    config, run_dir, _ = fit_arguments(fit)
    assert config == REPLAYED.replace(epochs=5, download=False, device="cpu", data_dir="/here/data")
    assert run_dir == Path("artifacts/run1")  # a new run, never the replayed one


def test_resume_passes_the_stored_config(fit: Recorder, center_run: Path) -> None:
    stored = TrainConfig.from_dict(json.loads((center_run / "config.json").read_text()))
    invoke(["train", "--resume", str(center_run), "--epochs", "4"], {"CL_ANALYZE_DATA": "d"})
    config, run_dir, kwargs = fit_arguments(fit)
    assert config == stored.replace(epochs=4, data_dir="d")
    assert run_dir == center_run and kwargs == {"resume": True, "overwrite": False}


def test_command_line_of_a_config_trains_it_again(fit: Recorder) -> None:
    wanted = TrainConfig(
        loss="softmax",
        dataset="mnist-5k",
        limit_test=200,
        feat_dim=3,
        epochs=12,
        batch_size=64,
        lr=0.01,
        weight_decay=1e-5,
        deterministic=True,
        precision="bf16",
        embed=False,
        keep_checkpoints="all",
    )
    words = shlex.split(wanted.command_line())
    assert words[:2] == ["cl-analyze", "train"]
    invoke(words[1:])
    config, _, _ = fit_arguments(fit)
    assert config == wanted


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a run's config.json"),
        ('{"loss": "center", "optimizer": "adam"}', "unknown train option 'optimizer'"),
        ('{"epochs": "ten"}', "epochs value 'ten' is not an integer"),
        ('{"loss": "triplet"}', "unknown loss 'triplet'"),
    ],
)
def test_bad_config_file_is_one_line(
    content: str | None,
    message: str,
    fit: Recorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    code, err = run_main(monkeypatch, capsys, "train", "--config", str(path))
    assert code == 2 and err.startswith("error: ") and message in err
    assert err.count("\n") == 1
    assert not fit.calls and not (tmp_path / "artifacts").exists()


def test_config_and_resume_contradict(
    fit: Recorder,
    center_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run_main(
        monkeypatch, capsys, "train", "--resume", str(center_run), "--config", str(center_run)
    )
    assert code == 2 and "drop --config" in err and not fit.calls


# --- sweep ---


def test_sweep_passes_only_given_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cl_analyze.sweep import SweepSpec

    result = SimpleNamespace(sweep_dir=tmp_path / "s", interrupted=False, failed=[], runs=[])
    run_sweep = Recorder(result)
    monkeypatch.setattr("cl_analyze.sweep.run_sweep", run_sweep)
    env = {"CL_ANALYZE_ARTIFACTS": str(tmp_path / "runs"), "CL_ANALYZE_DEVICE": "cpu"}
    invoke(
        shlex.split(
            "sweep --grid center-weight=0.01,0.1 --grid seed=1,2 --loss center --epochs 3"
            " --jobs 2 --quiet"
        ),
        env,
    )
    (spec,), kwargs = run_sweep.only_call
    assert spec == SweepSpec(
        grid=(("center_weight", (0.01, 0.1)), ("seed", (1, 2))),
        fixed=(("loss", "center"), ("epochs", 3), ("device", "cpu")),
        root=tmp_path / "runs",
        jobs=2,
        quiet=True,
    )
    assert kwargs == {"console": cli_train.err_console}


def test_sweep_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cl_analyze.sweep import SweepSpec

    result = SimpleNamespace(sweep_dir=tmp_path / "s", interrupted=False, failed=[], runs=[])
    run_sweep = Recorder(result)
    monkeypatch.setattr("cl_analyze.sweep.run_sweep", run_sweep)
    invoke(["sweep", "--grid", "seed=1,2"])
    (spec,), _ = run_sweep.only_call
    assert spec == SweepSpec(grid=(("seed", (1, 2)),), root=Path("artifacts"))


# --- embed, plot, report ---


def test_embed_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cl_analyze.training.embed import EmbedConfig

    embed = Recorder(tmp_path / "out.h5")
    monkeypatch.setattr("cl_analyze.training.embed.embed", embed)
    invoke(["embed", "run1"])
    invoke(["embed", "run1"], {"CL_ANALYZE_DEVICE": "cuda:1", "CL_ANALYZE_DATA": "/d"})
    invoke(shlex.split("embed run1 --checkpoint 3 --split train --dataset mnist --limit 50"))
    configs = [call[0][0] for call in embed.calls]
    assert configs == [
        EmbedConfig(run=Path("run1")),
        EmbedConfig(run=Path("run1"), device="cuda:1", data_dir="/d"),
        EmbedConfig(run=Path("run1"), checkpoint="3", split="train", dataset="mnist", limit=50),
    ]


def test_plot_defaults_are_plot_options_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from cl_analyze.viz.plot import PlotOptions

    plot_runs = Recorder(SimpleNamespace(files=[], out_dir=Path("x")))
    monkeypatch.setattr("cl_analyze.viz.plot.plot_runs", plot_runs)
    invoke(["plot", "a", "b"])
    invoke(
        shlex.split("plot a --split test --style slides --epochs 0,last --dims 0,1 --formats gif")
    )
    (first_runs, first, _), _ = plot_runs.calls[0]
    (_, second, _), _ = plot_runs.calls[1]
    assert first_runs == [Path("a"), Path("b")] and first == PlotOptions()
    assert second == PlotOptions(
        split="test",
        style="slides",
        epochs=(0, "last"),
        dims=(0, 1),
        animation_formats=("gif",),
    )


def test_report_defaults_are_report_options_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from cl_analyze.report import ReportOptions

    build_report = Recorder(Path("index.html"))
    monkeypatch.setattr("cl_analyze.report.build_report", build_report)
    invoke(["report", "a"])
    invoke(shlex.split("report a --threshold 98 --last-k 3 --no-figures --out r"))
    (runs, first, _), _ = build_report.calls[0]
    (_, second, _), _ = build_report.calls[1]
    assert runs == [Path("a")] and first == ReportOptions()
    assert second == ReportOptions(out=Path("r"), threshold=0.98, last_k=3, figures=False)


def test_report_setup_shows_the_rerun_command(center_run: Path, tmp_path: Path) -> None:
    from cl_analyze.config import command_line_of
    from cl_analyze.report import ReportOptions, build_report

    stored = json.loads((center_run / "config.json").read_text())
    build_report([center_run], ReportOptions(out=tmp_path / "report", figures=False))
    markdown = (tmp_path / "report" / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| rerun with"))
    assert TrainConfig(**stored).command_line() in row
    # A store another program wrote (RunWriter) has no config to rerun.
    assert command_line_of({}) is None and command_line_of({"model": "resnet18"}) is None
