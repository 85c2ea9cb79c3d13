"""What `--help`, `--version` and shell completion show: TrainConfig's defaults, the choices of the
constants they come from, panels, clean metavars, and suggestions on typos."""

from __future__ import annotations

import re
import sys
from dataclasses import fields

import pytest
import torch
from typer.testing import CliRunner

from cl_analyze import __version__, cli, cli_figures
from cl_analyze.config import (
    CENTER_UPDATES,
    DATASETS,
    KEEP_CHECKPOINTS,
    LOSSES,
    PRECISIONS,
    TrainConfig,
)

runner = CliRunner()
COMMANDS = ("train", "embed", "plot", "report", "sweep")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CHOICES = {
    "loss": LOSSES,
    "dataset": DATASETS,
    "center_update": CENTER_UPDATES,
    "precision": PRECISIONS,
    "keep_checkpoints": KEEP_CHECKPOINTS,
}


def help_text(*args: str) -> str:
    """A command's help, one line per option (wide enough never to wrap), without colours."""
    result = runner.invoke(
        cli.app, [*args, "--help"], env={"COLUMNS": "300"}, prog_name="cl-analyze"
    )
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.output)


def option_row(text: str, flag: str) -> str:
    rows = [line for line in text.splitlines() if re.search(rf"│ {flag}\s", line)]
    assert len(rows) == 1, (flag, rows)
    return rows[0]


def shown_default(value: object, flag: str) -> str:
    """How a default reads in the help, written out independently of Typer."""
    if isinstance(value, bool):
        return flag if value else f"no-{flag}"
    return str(value)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_help_shows_every_train_option_with_trainconfigs_default(command: str) -> None:
    text = help_text(command)
    for field in fields(TrainConfig):
        flag = field.name.replace("_", "-")
        row = option_row(text, f"--{flag}")
        match = re.search(r"\[default: (.*?)\]", row)
        assert match, f"--{flag} shows no default"
        if field.default is None:  # described in words, in parentheses: (all)
            assert match[1].startswith("("), row
        else:
            assert match[1] == shown_default(field.default, flag), row


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_help_lists_the_choices_of_the_constants(command: str) -> None:
    text = help_text(command)
    for name, choices in CHOICES.items():
        row = option_row(text, "--" + name.replace("_", "-"))
        assert f"<{'|'.join(choices)}>" in row


def test_train_options_are_grouped_in_panels() -> None:
    text = help_text("train")
    titles = re.findall(r"╭─ (.+?) ─", text)
    assert titles == ["Options", "Data", "Model & loss", "Optimisation", "Run folder", "Output"]
    sweep_titles = re.findall(r"╭─ (.+?) ─", help_text("sweep"))
    assert "Sweep" in sweep_titles and len(sweep_titles) == 7


@pytest.mark.parametrize("command", [(), *((c,) for c in COMMANDS)])
def test_metavars_read_the_click_way(command: tuple[str, ...]) -> None:
    text = help_text(*command)
    for odd in ("<bool>", "{", "list["):
        assert odd not in text
    assert "[default:" in text or not command  # every command shows its defaults


def test_arguments_in_usage_and_help() -> None:
    plot = help_text("plot")
    assert re.search(r"Usage: cl-analyze plot \[OPTIONS\] RUNS\.\.\.\s*$", plot, re.M)
    assert re.search(r"RUNS\.\.\.\s+<path>", plot)
    embed = help_text("embed")
    assert re.search(r"Usage: cl-analyze embed \[OPTIONS\] RUN\s*$", embed, re.M)
    assert re.search(r"RUN\s+<path>", embed)


def test_environment_variables_are_shown() -> None:
    train = help_text("train")
    assert "env var: CL_ANALYZE_DATA" in option_row(train, "--data-dir")
    assert "env var: CL_ANALYZE_DEVICE" in option_row(train, "--device")
    assert "CL_ANALYZE_ARTIFACTS" in option_row(train, "--out")


def test_version_names_package_torch_and_hardware() -> None:
    result = runner.invoke(cli.app, ["--version"], prog_name="cl-analyze")
    assert result.exit_code == 0
    (line,) = result.output.splitlines()
    assert line.startswith(f"cl-analyze {__version__} ")
    assert f"torch {torch.__version__}" in line
    assert f"CPU capability {torch.backends.cpu.get_cpu_capability()}" in line
    if torch.cuda.is_available():
        assert f"CUDA {torch.version.cuda}" in line and torch.cuda.get_device_name(0) in line
    else:
        assert "no GPU visible" in line or "no CUDA" in line


@pytest.mark.parametrize(
    ("available", "cuda", "expected"),
    [
        (True, "13.0", "CUDA 13.0, 2 GPUs (NVIDIA H200),"),
        (False, "13.0", "CUDA 13.0 build, no GPU visible,"),
        (False, None, "torch 2.9.0+cpu, no CUDA,"),
    ],
)
def test_version_line_on_each_kind_of_machine(
    available: bool, cuda: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU branches, on machines this suite cannot count on: torch's answers stand in."""
    monkeypatch.setattr(torch, "__version__", "2.9.0+cpu" if cuda is None else "2.9.0+cu130")
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H200")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    line = cli.version_line()
    assert expected in line and line.endswith(", CPU capability AVX512)")


def complete(words: str) -> list[str]:
    """What bash completion offers after ``words`` (Typer's completion protocol, no shell)."""
    env = {
        "_CL_ANALYZE_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    result = runner.invoke(cli.app, [], env=env, prog_name="cl-analyze")
    assert result.exit_code == 0
    return result.output.split()


def test_completion_offers_commands_choices_and_options() -> None:
    assert complete("cl-analyze tr") == ["train"]
    assert complete("cl-analyze train --loss ") == list(LOSSES)
    assert complete("cl-analyze train --dataset mn") == [d for d in DATASETS if d.startswith("mn")]
    assert "--center-update" in complete("cl-analyze sweep --cen")
    assert complete("cl-analyze plot a --style ") == list(cli_figures.PLOT_STYLES)


def test_completion_can_be_installed() -> None:
    root = help_text()
    assert "--install-completion" in root and "--show-completion" in root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataset", "mnist5k"], "did you mean 'mnist-5k'?"),
        (["train", "--precision", "bf61"], "did you mean 'bf16'?"),
        (["sweep", "--backend", "rya"], "did you mean 'ray'?"),
        (["plot", "a", "--style", "slide"], "did you mean 'slides'?"),
        (["embed", "a", "--split", "tset"], "did you mean 'test'?"),
        (["embed", "a", "--split", "val"], "'val' is not one of train, test"),
        (["plot", "a", "--split", "valid"], "'valid' is not one of train, test, both"),
        (["trian"], "Did you mean 'train'?"),
        (["train", "--los", "center"], "--loss"),
        (["plot"], "Missing argument 'RUNS'"),
    ],
)
def test_typos_get_a_suggestion_on_one_line(
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["cl-analyze", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "--help`)" in err  # where to look next


def test_device_from_the_environment_is_checked_when_parsed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CL_ANALYZE_DEVICE", "gpu")
    monkeypatch.setattr(sys, "argv", ["cl-analyze", "train"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "CL_ANALYZE_DEVICE" in err and "unknown device 'gpu'" in err


def test_plot_choices_match_viz() -> None:
    """cli writes them out to keep matplotlib out of its start-up; they must not drift."""
    from cl_analyze.viz.plot import SPLIT_CHOICES
    from cl_analyze.viz.style import STYLES

    assert SPLIT_CHOICES == cli_figures.PLOT_SPLITS
    assert tuple(STYLES) == cli_figures.PLOT_STYLES


@pytest.mark.parametrize("command", ["plot", "report"])
def test_help_names_the_extra_to_install(command: str) -> None:
    # Rich would read a bare "[umap]" as markup and print "cl-analyze" alone.
    assert "pip install 'cl-analyze[umap]'" in " ".join(help_text(command).split())
