"""What a sweep trains: a grid of train options and the fixed ones, parsed and checked."""

from __future__ import annotations

import itertools
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cl_analyze.config import TrainConfig
from cl_analyze.errors import CLAnalyzeError

BACKENDS = ("local", "ray")


# The sweep picks each run's device; a grid over devices would fight that.
NOT_SWEEPABLE = frozenset({"device"})


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)


DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def option_flag(name: str) -> str:
    return name.replace("_", "-")


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep and where. ``grid``: ordered (field, values) pairs; ``fixed``: field values
    shared by every run (TrainConfig field names); the rest says where and how to run."""

    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()
    out: Path | None = None
    resume: Path | None = None
    root: Path = Path("artifacts")
    backend: str = "local"
    jobs: int | None = None
    address: str | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise CLAnalyzeError(f"unknown backend {self.backend!r}: use local or ray")
        if self.jobs is not None and self.jobs < 1:
            raise CLAnalyzeError(f"--jobs must be >= 1, got {self.jobs}")
        if self.address is not None and self.backend != "ray":
            raise CLAnalyzeError("--address is for the Ray backend: add --backend ray")
        if (
            self.resume is not None
            and self.out is not None
            and self.out.resolve() != self.resume.resolve()
        ):
            raise CLAnalyzeError("--resume already names the sweep folder: drop --out")


def field_name(option: str) -> str:
    """``center-weight`` or ``center_weight`` -> ``center_weight``, or a one-line error."""
    name = option.strip().lstrip("-").replace("-", "_")
    if name not in FIELD_TYPES:
        known = ", ".join(option_flag(n) for n in FIELD_TYPES)
        raise CLAnalyzeError(f"unknown train option {option!r}: use one of {known}")
    return name


def convert_value(name: str, value: Any) -> Any:
    """A command-line string or a TOML value, as the TrainConfig field ``name``'s type."""
    hint = FIELD_TYPES[name]
    allow_none = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        allow_none = len(members) < len(typing.get_args(hint))
        hint = members[0]
    flag = option_flag(name)
    if isinstance(value, str):
        text = value.strip()
        if allow_none and text.lower() in ("none", "null"):
            return None
        try:
            if hint is bool:
                return _parse_bool(text)
            if hint is int:
                return int(text)
            if hint is float:
                return float(text)
        except ValueError:
            raise CLAnalyzeError(
                f"{flag} value {text!r} is not {_KINDS[hint]}: fix the value"
            ) from None
        return text
    if value is None and allow_none:
        return None
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise CLAnalyzeError(f"{flag} value {value!r} is not {_KINDS[hint]}: fix the value")


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(text)


def parse_grid_item(item: str) -> tuple[str, tuple[Any, ...]]:
    """``center-weight=0.003,0.01`` -> (``center_weight``, (0.003, 0.01))."""
    option, equals, values_text = item.partition("=")
    if not equals or not option.strip():
        raise CLAnalyzeError(
            f"malformed --grid {item!r}: write OPTION=V1,V2,... e.g. --grid seed=1,2,3"
        )
    name = field_name(option)
    if not values_text.strip():
        raise CLAnalyzeError(f"--grid {item!r} has an empty list: give at least one value")
    texts = values_text.split(",")
    if any(not t.strip() for t in texts):
        raise CLAnalyzeError(
            f"malformed --grid {item!r}: an empty value between commas; write V1,V2,..."
        )
    return name, tuple(convert_value(name, t) for t in texts)


def read_grid_file(path: Path) -> tuple[list[tuple[str, tuple[Any, ...]]], dict[str, Any]]:
    """A TOML file with a ``[grid]`` table of lists and an optional ``[fixed]`` table."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser, from PyPI, before it joined the standard library
        import tomli as tomllib

    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise CLAnalyzeError(f"cannot read --grid-file {path} ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise CLAnalyzeError(f"--grid-file {path} is not valid TOML ({error}): fix it") from None
    unknown = set(document) - {"grid", "fixed"}
    if unknown or not isinstance(document.get("grid"), dict):
        raise CLAnalyzeError(
            f"--grid-file {path} needs a [grid] table of lists (and optionally [fixed]);"
            f" found {', '.join(sorted(document)) or 'nothing'}"
        )
    grid = []
    for option, values in document["grid"].items():
        name = field_name(option)
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise CLAnalyzeError(f"--grid-file {path}: {option} is an empty list: give values")
        grid.append((name, tuple(convert_value(name, v) for v in values)))
    if not isinstance(document.get("fixed", {}), dict):
        raise CLAnalyzeError(f"--grid-file {path}: [fixed] must be a table of option = value")
    fixed = {field_name(k): v for k, v in document.get("fixed", {}).items()}
    return grid, {k: convert_value(k, v) for k, v in fixed.items()}


def sweep_spec(
    grid_items: Sequence[str] = (),
    grid_file: Path | None = None,
    fixed: Mapping[str, Any] | None = None,
    **where: Any,
) -> SweepSpec:
    """Parse ``--grid`` items, a ``--grid-file`` and fixed train options into a spec."""
    grid: list[tuple[str, tuple[Any, ...]]] = []
    file_fixed: dict[str, Any] = {}
    if grid_file is not None:
        grid, file_fixed = read_grid_file(grid_file)
    grid += [parse_grid_item(item) for item in grid_items]
    given = {
        **file_fixed,
        **{field_name(k): convert_value(field_name(k), v) for k, v in (fixed or {}).items()},
    }
    return SweepSpec(grid=tuple(grid), fixed=tuple(given.items()), **where)


def check_grid(grid: Sequence[tuple[str, tuple[Any, ...]]], fixed: Mapping[str, Any]) -> None:
    seen: set[str] = set()
    for name, values in grid:
        flag = option_flag(name)
        if name in NOT_SWEEPABLE:
            raise CLAnalyzeError(
                f"--grid {flag} is not sweepable: the sweep picks each run's device"
                " (give --device once to force one)"
            )
        if name in seen:
            raise CLAnalyzeError(f"--grid {flag} is given twice: merge its values into one list")
        if name in fixed:
            raise CLAnalyzeError(f"--{flag} is both swept and fixed: drop one of them")
        if not values:
            raise CLAnalyzeError(f"--grid {flag} has an empty list: give at least one value")
        if len(set(map(repr, values))) != len(values):
            raise CLAnalyzeError(f"--grid {flag} repeats a value: list each value once")
        seen.add(name)


def format_value(value: Any) -> str:
    """A value as it appears in a run's folder name: short, exact and filesystem-safe."""
    if value is None:
        text = "none"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:g}"
        if float(text) != value:
            text = repr(value)
    else:
        text = str(value)
    return "".join(c if c.isalnum() or c in ".+-" else "-" for c in text)


def combination_name(values: Mapping[str, Any]) -> str:
    return "_".join(f"{option_flag(k)}={format_value(v)}" for k, v in values.items())


def combinations(grid: Sequence[tuple[str, tuple[Any, ...]]]) -> list[dict[str, Any]]:
    """Every combination, the first axis varying slowest."""
    names = [name for name, _ in grid]
    return [
        dict(zip(names, chosen, strict=True)) for chosen in itertools.product(*(v for _, v in grid))
    ]
