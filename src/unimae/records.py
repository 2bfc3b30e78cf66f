"""The one mechanism behind unimae's typed records: pydantic v2 dataclasses, checked on construction.

Every record a user or a file can hand us (the training config, ``unimae.json``, result files, a RAG
index manifest) is a pydantic dataclass built with :func:`record_config`, its fields annotated with the
types below and ``Field`` constraints, so a wrong type or an out-of-range value is refused where it is
built, naming the field. What a record does with keys it does not know is chosen per record on purpose
(``extra``): a config refuses them (a typo must not pass silently), a file that newer versions may
extend ignores them.

:func:`user_errors` turns pydantic's ``ValidationError`` into the record's own ``UserError`` subclass,
one line per problem, so the command line prints it as a user error (exit code 2), not a traceback.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from unimae.errors import UserError

__all__ = [
    "Field",
    "Number",
    "Real",
    "StrictBool",
    "StrictInt",
    "StrictStr",
    "format_validation_error",
    "record_config",
    "user_errors",
]


def _real(value: Any) -> Any:
    """A number for a float field: an int is taken, a bool or a non-finite number is not."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the bool {value}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


Real = Annotated[float, BeforeValidator(_real)]
"""A finite float; an int is accepted (and stored as float), a bool is not."""


def _number(value: Any) -> Any:
    """A number kept as written: an int stays an int, a float a float; a bool or anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected float, got {type(value).__name__} {_short(value)}")
    return value


Number = Annotated[float, PlainValidator(_number)]
"""A float field of a record whose files must save back unchanged: an int is kept an int (``3`` is not
rewritten as ``3.0``), a bool is refused. Not checked for finiteness: such a file holds what was measured."""


def record_config(extra: Literal["forbid", "ignore"]) -> ConfigDict:
    """The pydantic settings of a record: ``extra`` says what unknown keys do (refused or dropped)."""
    return ConfigDict(extra=extra)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _is_tag(part: Any) -> bool:
    """A union member's tag in an error location (``str``, ``list[str]``, ``function-after[...]``,
    ``constrained-str``), not a field name or a dict key (``x.txt``)."""
    return isinstance(part, str) and (
        part in _TYPE_TAGS
        or part.startswith("constrained-")
        or re.fullmatch(r"[\w-]+\[.*\]", part, flags=re.DOTALL) is not None
    )


def _path(parts: tuple) -> str:
    """``files['a.txt'].ids[0]``: names dotted, list indices and other dict keys in brackets."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{str(part)!r}]"
    return text


def _split(loc: tuple) -> tuple[str, str | None]:
    """(field path, the union member tag it failed under, or None) of an error location."""
    for i, part in enumerate(loc):
        if _is_tag(part):
            return _path(loc[:i]), _tag_name(part)
    return _path(loc), None


def _tag_name(tag: str) -> str:
    inner = tag.rpartition(", ")[2].rstrip("]") if tag.startswith("function-") else tag
    return inner.removeprefix("constrained-")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _message(error: dict) -> str:
    if error.get("type") == "missing":
        return f"missing field {error['loc'][-1]!r}"
    if error.get("type") == "value_error":  # our own check's message, as written
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if error.get("type") in ("unexpected_keyword_argument", "extra_forbidden"):
        return "unknown field"
    return f"{error['msg'][0].lower()}{error['msg'][1:]}, got {_short(error.get('input'))}"


def format_validation_error(error: ValidationError) -> str:
    """pydantic's errors as one line: ``field.path: what is wrong, got VALUE``, joined by ``; `` (a path
    like ``files['a.txt'].ids[0]``).

    A value that matches no member of a union (``str | list[str]``) is one problem: ``expected str |
    list[str], got VALUE``; a missing field is named on the path of its record: ``model_info: missing
    field 'revision'``."""
    problems: dict[str, list[tuple[str | None, dict]]] = {}
    for e in error.errors(include_url=False):
        loc = tuple(e.get("loc", ()))
        path, tag = _split(loc[:-1] if e.get("type") == "missing" else loc)  # named by its record's path
        problems.setdefault(path, []).append((tag, e))
    lines = []
    for path, errors in problems.items():
        tags = list(dict.fromkeys(t for t, _ in errors if t))
        if len(tags) > 1:
            whole = next((e.get("input") for t, e in errors if t == tags[0]), None)
            lines.append(f"{path}: expected {' | '.join(tags)}, got {_short(whole)}")
        else:
            lines += [f"{path}: {_message(e)}" if path else _message(e) for _, e in errors]
    return "; ".join(dict.fromkeys(lines))


def user_errors(error_class: type[UserError]):
    """Class decorator: constructing the record raises ``error_class`` (a one-line ``UserError``)
    instead of pydantic's ``ValidationError``."""

    def wrap(cls: type) -> type:
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as e:
                raise error_class(format_validation_error(e)) from None

        cls.__init__ = __init__
        return cls

    return wrap
