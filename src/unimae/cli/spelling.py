"""The interface's spellings read into jsonargparse's, and a refused value as one line named from its type.

Kept spellings (the interface, in README.md and docs/usage.md): ``key=value`` training overrides (dotted
``optim.lr=...`` or the flat names of older configs, ``unimae.config_names``), ``--dashed-names``, bare
``--flag`` and ``--no-flag``, ``--tasks A B C`` and ``-o/-i/-k/--index``. A value jsonargparse refuses is
explained from the option's type with pydantic (``refusal``), not from jsonargparse's English wording.
"""

from __future__ import annotations

import collections.abc
import json
import re
import types
import typing
from argparse import ArgumentError
from typing import Annotated, Any, Literal

from unimae.cli.options import Command

ALIASES = {"-o": "--output", "-i": "--input", "-k": "--k", "--index": "--index_dir"}


LISTS = (list, tuple, collections.abc.Sequence)


def _members(hint: Any) -> list[Any]:
    """The types a hint allows, None and ``Annotated`` constraints left out (``int | None`` -> [int])."""
    if typing.get_origin(hint) is Annotated:
        return _members(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(hint) for m in _members(a)]
    return [] if hint is type(None) else [hint]


def _is_bool(hint: Any) -> bool:
    """A flag: bare ``--name`` is true, ``--no-name`` false."""
    return _members(hint) == [bool]


def _is_list(hint: Any) -> bool:
    """Takes ``--name A B C`` (the words up to the next option) as a list."""
    return any((typing.get_origin(m) or m) in LISTS for m in _members(hint))


def _name(flag: str, cmd: Command) -> str:
    """An option's name as declared: ``--output-dir`` -> ``output_dir``, ``-o`` -> ``output``, an older
    name -> today's (``--max-texts`` -> ``data.max_texts``)."""
    name = ALIASES.get(flag, flag).removeprefix("--").replace("-", "_")
    return cmd.renames.get(name, name)


def normalize(argv: list[str], cmd: Command) -> list[str]:
    """The interface's spellings as jsonargparse's: a known option becomes ``--name=value`` (its value
    taken from the next tokens as its type says); ``key=value`` an override; anything else is kept."""
    out, rest = [], list(argv)
    while rest:
        token = rest.pop(0)
        key, eq, value = token.partition("=")
        if cmd.overrides and eq and re.fullmatch(r"[A-Za-z_][\w.]*", key):
            out.append(f"{cmd.overrides}{cmd.renames.get(key, key)}={value}")
        elif key.startswith("--") and len(key) > 2 or key in ALIASES:
            out.append(_option(_name(key, cmd), eq, value, rest, cmd))
        else:
            out.append(token)
    return out


def _option(name: str, eq: str, value: str, rest: list[str], cmd: Command) -> str:
    """``--name=value`` for option ``name``, its value (when not given after ``=``) taken from the front
    of ``rest``: none for a flag (``--no-name``: false), the words up to the next option for a list."""
    negated = cmd.renames.get(name[3:], name[3:])
    if name.startswith("no_") and not eq and _is_bool(cmd.hints.get(negated)):
        return f"--{negated}=false"
    hint = cmd.hints.get(name)
    if eq or hint is None:  # as given: jsonargparse reads it (or says it does not know it)
        return f"--{name}{eq}{value}"
    if _is_bool(hint):
        value = rest.pop(0) if rest and rest[0].lower() in ("true", "false") else "true"
    elif _is_list(hint) and rest and not rest[0].startswith(("[", "-")):
        words = []
        while rest and not rest[0].startswith("-"):
            words.append(rest.pop(0))
        value = json.dumps(words)
    elif rest:
        value = rest.pop(0)
    else:
        return f"--{name}"
    return f"--{name}={value}"


def _refusal(hint: Any, given: str) -> str | None:
    """Why an option of type ``hint`` cannot be ``given`` (as typed, or read as YAML as jsonargparse reads
    it), from the type: ``expected int, got 'abc'``, ``expected one of a, b``, or the bound it breaks
    (``input should be greater than 0, got 0``); None if it can, or if pydantic cannot check the type."""
    import yaml
    from pydantic import TypeAdapter

    from unimae.records import format_validation_error

    try:
        value = yaml.safe_load(given)
        problem = _problem(TypeAdapter(hint), given, value)
        of_type = [_problem(TypeAdapter(member), value) for member in _members(hint)]
    except Exception:  # a type pydantic cannot check, or text that is not YAML: jsonargparse's word stands
        return None
    if problem is None:
        return None
    if None in of_type:  # the right type, outside its bounds
        return format_validation_error(problem)
    return f"expected {_describe(hint)}, got {given!r}"


def _problem(adapter: Any, *values: Any) -> Exception | None:
    """None if ``adapter`` takes one of ``values``, else its ValidationError for the last."""
    from pydantic import ValidationError

    for value in values:
        try:
            adapter.validate_python(value)
            return None
        except ValidationError as e:
            problem = e
    return problem


def _describe(hint: Any) -> str:
    """The types ``hint`` allows, as a user reads them: ``int``, ``one of fp32, bf16``, ``dict | str``."""
    names = []
    for member in _members(hint):
        if typing.get_origin(member) is Literal:
            names.append("one of " + ", ".join(str(c) for c in typing.get_args(member)))
        else:
            names.append(getattr(typing.get_origin(member) or member, "__name__", str(member)))
    return " | ".join(names)


def one_line(error: ArgumentError, argv: list[str], cmd: Command | None) -> str:
    """A parse error as one line: the first given option whose type refuses its value, named, with why;
    else jsonargparse's message with its lines joined."""
    for token in argv if cmd else []:
        key, eq, given = token.partition("=")
        hint = cmd.hints.get(key[2:]) if key.startswith("--") and eq else None
        why = None if hint is None else _refusal(hint, given)
        if why:
            return f"{key}: {why}"
    return " ".join(str(error).split())
