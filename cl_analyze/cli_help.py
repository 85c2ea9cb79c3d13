"""How the command line reads and answers: choices that suggest a fix, click-style metavars.

Typer (0.29) lists a ``Literal``'s values in the help and completes them, but answers a typo with
the list alone, and writes ``--help <bool>``, ``{run}`` and ``<list[Path]>`` where click writes
``--help``, ``RUN`` and ``<path>``. Commands and the group use the classes below to read the click
way; options use ``choice_parser`` for the suggestion.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import Any, get_args

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def choice_parser(choices: Sequence[str]) -> Callable[[str], str]:
    """A Typer ``parser`` accepting one of ``choices`` that suggests the closest one on a typo.

    Typer runs it in place of its own choice check (on the command line, environment variables
    and defaults alike), while the option's ``Literal`` annotation still lists and completes the
    choices."""
    allowed = tuple(choices)

    def parse(value: str) -> str:
        if value in allowed:
            return value
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f": did you mean {close[0]!r}?" if close else ""
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}{hint}")

    return parse


class _Argument(TyperArgument):
    """A positional argument as click shows it: ``RUN`` or ``RUNS...`` in the usage line (Typer
    writes ``{run}``) and the item type of a list, ``<path>`` (Typer writes ``<list[Path]>``)."""

    @property
    def display_name_raw(self) -> str:
        return (self.metavar or self.name or "").upper()

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return [name if self.required else f"[{name}]"]

    def display_type_rich(self, ctx: Any) -> str | None:
        descriptor = self.type_descriptor
        if descriptor.is_list:
            (item,) = get_args(descriptor.annotation)
            is_path = isinstance(item, type) and issubclass(item, PurePath)
            return "<path>" if is_path else f"<{getattr(item, '__name__', item)}>"
        return super().display_type_rich(ctx)


def _tidy(params: Sequence[Any]) -> None:
    for param in params:
        if isinstance(param, TyperArgument) and not isinstance(param, _Argument):
            # Typer has no hook for its argument class; _Argument only changes how it is shown.
            param.__class__ = _Argument
        elif isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # a flag takes no value, so it has no type to show


class Command(TyperCommand):
    """A command whose help shows flags without a type and arguments the click way."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # with --help, created on demand
        _tidy(params)
        return params


class Group(TyperGroup):
    """The command group, shown like ``Command`` (``--help``, ``--version``, completion: Typer
    adds the completion options after building the group, so they are tidied here too)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _tidy(params)
        return params
