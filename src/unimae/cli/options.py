"""What every ``unimae`` command is declared with: ``Command`` (a parser, what it runs, each option's type)
and the options several commands share. Options come from a library function's signature or a config
dataclass's field docstrings (jsonargparse, as litgpt does)."""

from __future__ import annotations

import inspect
import shlex
import typing
from argparse import RawDescriptionHelpFormatter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from jsonargparse import (
    ArgumentParser,
    DefaultHelpFormatter,
    Namespace,
    set_parsing_settings,
)
from jsonargparse.typing import PositiveInt

from unimae.spec import POOLINGS

# help text under each dataclass field (""" after the field), as the configs are documented
set_parsing_settings(docstring_parse_attribute_docstrings=True)


Pooling = Literal[POOLINGS] | None
BACKEND_HELP = "what computes embeddings: torch, onnx, onnx-int8, openvino, openvino-int8 (docs/backends.md)"

THREADS_HELP = (
    "CPU threads for torch, ONNX Runtime and OpenVINO (default: OMP_NUM_THREADS, else one a core); idle "
    "threads sleep rather than spin unless OMP_WAIT_POLICY is set (docs/backends.md, 'beside a busy neighbour')"
)


class Formatter(RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help (types, defaults) with the examples epilog kept as written."""


@dataclass
class Command:
    """One subcommand: its parser, what it runs, and each option's type (which says how it is spelled)."""

    parser: ArgumentParser
    run: Callable[[Namespace], None]
    hints: dict[str, Any] = field(default_factory=dict)  # option name -> type hint
    overrides: str | None = None  # "key=value" tokens become --key=value (train) or --overrides.key=value
    renames: dict[str, str] = field(default_factory=dict)  # older option names -> today's (train: LEGACY)

    def option(self, name: str, hint: Any, help: str, check: Any = None, **kwargs: Any) -> None:
        """Declare ``--name`` of type ``hint`` (default None unless given); ``check``: the same type as
        pydantic checks it, where ``hint`` is one of jsonargparse's (``PositiveInt``, named so in --help)."""
        self.parser.add_argument(f"--{name}", type=hint, help=help, **{"default": None, **kwargs})
        self.hints[name] = check or hint


def make_parser(help: str, epilog: str | None = None) -> ArgumentParser:
    p = ArgumentParser(description=help, epilog=epilog, formatter_class=Formatter, exit_on_error=False)
    p.help = help  # shown in `unimae --help`
    return p


def type_hints(target: Callable | type, prefix: str = "") -> dict[str, Any]:
    """Option name -> type hint of ``target``'s parameters, or of a dataclass's fields (a nested
    dataclass's fields as ``section.field``)."""
    dataclass_ = isinstance(target, type) and hasattr(target, "__dataclass_fields__")
    hints = typing.get_type_hints(target.__init__ if isinstance(target, type) and not dataclass_ else target)
    out: dict[str, Any] = {}
    for name, hint in hints.items():
        if dataclass_ and isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
            out.update(type_hints(hint, f"{prefix}{name}."))
        else:
            out[prefix + name] = hint
    return out


def add_options(
    cmd: Command, target: Callable | type, skip: set[str] = frozenset(), positional: bool = True
) -> None:
    """Declare ``target``'s parameters (or a dataclass's fields) as options; required ones positional."""
    if isinstance(target, type):
        cmd.parser.add_class_arguments(target, None, skip=set(skip), sub_configs=True)
    else:
        cmd.parser.add_function_arguments(target, None, skip=set(skip), as_positional=positional)
    cmd.hints.update(type_hints(target))


def default_of(fn: Callable, name: str) -> Any:
    """The default of ``fn``'s parameter ``name``: CLI-side options that stand for it show the same value."""
    return inspect.signature(fn).parameters[name].default


def command_line(name: str, ns: Namespace, positional: list[str], skip: tuple[str, ...] = ()) -> str:
    """The command that reproduces ``ns`` (rebuilt from the parsed options, so it also works in-process)."""
    values = ns.as_dict()
    parts = ["unimae", name, *(shlex.quote(str(values[p])) for p in positional)]
    for key, value in sorted(values.items()):
        if key in (*skip, *positional) or value is None or value is False or key == "__path__":
            continue
        flag = "--" + key
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *(shlex.quote(str(v)) for v in value)]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def plain(ns: Namespace) -> dict[str, Any]:
    """The parsed options as keyword arguments (``--threads`` is applied by ``main``, not passed on)."""
    return {k: v for k, v in ns.as_dict().items() if k not in ("__path__", "threads")}


def threads_option(cmd: Command) -> None:
    cmd.option("threads", PositiveInt | None, THREADS_HELP, check=pydantic.PositiveInt | None)


def device_option(cmd: Command) -> None:
    cmd.option("device", str | None, "cpu, cuda, cuda:1, mps (default: best available)")


def pooling_option(cmd: Command) -> None:
    cmd.option("pooling", Pooling, "default: what the model's unimae.json says, else eos")
