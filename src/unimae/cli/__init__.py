"""The ``unimae`` command: each subcommand declared once from the library function or config it calls.

``commands.COMMANDS`` is the table of subcommands (name -> the function that declares it, as litgpt's
``PARSER_DATA``); jsonargparse parses them. Only the chosen one is declared, so ``unimae --help`` and one
command import only what they use (no torch for ``--help``). ``spelling`` reads the interface's
spellings (``key=value``, ``--dashed-names``, ``--no-flag``, ...) into jsonargparse's; ``options`` holds
``Command`` and the shared options.

Errors: ``unimae.errors.UserError`` (bad input) and a missing or existing path the user gave print one line
and exit 2; an option value its type refuses is named from the option's type (``spelling.refusal``), not
from jsonargparse's wording; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from argparse import ArgumentError
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from unimae.cli.commands import COMMANDS, ROOT_EXAMPLES
from unimae.cli.options import Command, add_options, make_parser, threads_option
from unimae.cli.spelling import normalize, one_line
from unimae.errors import UserError

RESUME_HINT = "interrupted; `unimae train --resume` continues from the last checkpoint"
INTERRUPTED = {  # what Ctrl-C prints, by command: how to continue where there is a way
    "train": RESUME_HINT,
    "eval": "interrupted; the same command with --resume true finishes the missing tasks",
}


# --- threads: defaults that hold beside busy neighbours (docs/backends.md) ------------------------------

# OpenMP threads that wait at a barrier sleep instead of spinning: on cores shared with other busy
# processes, spinning threads took the CPU the working ones needed (encode at 2 threads collapsed to a
# fraction of its 1-thread rate; benchmarks/neighbour_threads.py).
THREAD_ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def apply_thread_defaults(environ: dict | None = None) -> None:
    """Set ``THREAD_ENV_DEFAULTS`` in ``environ`` (default ``os.environ``) where the user set nothing.

    Call before torch (and its OpenMP runtime) is imported: OpenMP reads its environment once, when it
    loads. ``unimae.cli`` imports no torch, so ``main`` calls this first.
    """
    environ = os.environ if environ is None else environ
    for key, value in THREAD_ENV_DEFAULTS.items():
        environ.setdefault(key, value)


def _set_threads(ns: Namespace) -> None:
    """``--threads N``, where the command has it and it was given: torch's intra-op threads (graph backends
    take torch's count)."""
    if ns.get("threads"):
        import torch

        torch.set_num_threads(ns.threads)


def build_parser(names: list[str], cmd: Command | None) -> ArgumentParser:
    """The ``unimae`` parser: the subcommand at ``names`` declared in full (``cmd``), the others by name
    and help only (so that ``unimae --help`` and one command import only what they use)."""
    root = make_parser("UniMAE: one decoder-only LLM that embeds and generates.", ROOT_EXAMPLES)
    root.prog = "unimae"
    root.add_argument("-v", "--verbose", action="store_true", help="log more")
    _subcommands(root, COMMANDS, "command", names, cmd)
    return root


def _subcommands(
    parser: ArgumentParser, table: dict, dest: str, names: list[str], cmd: Command | None
) -> None:
    sub = parser.add_subcommands(dest=dest)
    for name, entry in table.items():
        below = names[1:] if names[:1] == [name] else None  # the path under this entry, if chosen
        if isinstance(entry, dict):
            group = make_parser(f"{name} subcommands")
            sub.add_subcommand(name, group, help=f"{name}: {', '.join(entry)}")  # parent first, then its own
            _subcommands(group, entry, f"{name}_command", below or [], cmd)
        else:
            chosen = below == [] and cmd is not None
            sub.add_subcommand(name, cmd.parser if chosen else make_parser(entry[0]), help=entry[0])


def _choose(argv: list[str]) -> tuple[list[str], int]:
    """The subcommand's name path (``["rag", "ask"]``) from ``argv``'s leading words, and the index where
    its own arguments start; ``([], len(argv))`` when the words name no subcommand."""
    entry: Any = COMMANDS
    names: list[str] = []
    for at, token in enumerate(argv):
        if token.startswith("-"):
            continue
        if not isinstance(entry, dict) or token not in entry:
            break
        names.append(token)
        entry = entry[token]
        if isinstance(entry, tuple):
            return names, at + 1
    return [], len(argv)


def declare(names: list[str]) -> Command:
    """The Command of the subcommand at ``names``, declared from its library function now."""
    entry: Any = COMMANDS
    for name in names:
        entry = entry[name]
    help, factory = entry
    return factory(help)


def parse(argv: list[str]) -> tuple[list[str], Command | None, Namespace]:
    """The chosen subcommand's names, Command and namespace from ``argv`` (its spellings read by
    ``_normalize``); a value or option jsonargparse refuses is a UserError of one line naming it."""
    names, at = _choose(argv)
    cmd = declare(names) if names else None
    if cmd is not None:
        argv = argv[:at] + normalize(argv[at:], cmd)
    parser = build_parser(names, cmd)
    try:
        ns = _parse_train(parser, argv, at) if names == ["train"] else parser.parse_args(argv)
    except ArgumentError as e:
        raise UserError(one_line(e, argv, cmd)) from None
    for name in names:
        ns = ns[name]
    return names, cmd, ns


def _parse_train(parser: ArgumentParser, argv: list[str], at: int) -> Namespace:
    """``train``'s namespace; with ``--resume`` and no --config, parsed again over the run's saved
    config.yaml (the options given still win). Config files are read by ``_config_contents``."""
    argv = _config_contents(argv)
    ns = parser.parse_args(argv)
    saved = Path(ns.train.output_dir) / "config.yaml"
    if ns.train.resume and not any(ns.train.config or []) and saved.is_file():
        ns = parser.parse_args(_config_contents(argv[:at] + ["--config", str(saved)] + argv[at:]))
    return ns


def _config_contents(argv: list[str]) -> list[str]:
    """``--config FILE`` as ``--config=<its values in today's nested form, as JSON>``, checked first so
    that a file's errors name the file (ConfigError)."""
    from unimae.training.config import load_config, read_config_file, upgrade

    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        path = argv[i + 1] if token == "--config" and i + 1 < len(argv) else None
        if token.startswith("--config="):
            path = token.partition("=")[2]
        if path is None or path.lstrip().startswith("{"):
            out.append(token)
            i += 1
            continue
        load_config(path)  # the file's errors, naming it
        out.append("--config=" + json.dumps(upgrade(read_config_file(path))))
        i += 1 if token.startswith("--config=") else 2
    return out


# options that are text, not paths: bytes that are not UTF-8 in them are refused (a path may hold any bytes)
TEXT_OPTIONS = {"texts", "question", "query", "prompt", "encode_prompt", "read_prompt", "text_field", "label"}


def check_text_options(values: dict[str, Any], prefix: str = "") -> None:
    """UserError naming the option whose text is not valid Unicode (bytes that are not UTF-8 on the
    command line arrive as lone surrogates, which no tokenizer or file can take)."""
    from unimae.io import not_unicode

    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            check_text_options(value, f"{name}.")
            continue
        if key not in TEXT_OPTIONS:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        for i, item in enumerate(items):
            why = not_unicode(item) if isinstance(item, str) else None
            if why is not None:
                where = f"{name} item {i + 1}" if isinstance(value, (list, tuple)) else name
                raise UserError(f"{where}: {why}; give the text in UTF-8")


def main(argv: list[str] | None = None) -> int:
    apply_thread_defaults()  # before any command imports torch
    argv = list(sys.argv[1:] if argv is None else argv)
    names, at = _choose(argv)
    prog = " ".join(["unimae", *names])
    try:
        names, cmd, ns = parse(argv)
    except (UserError, FileNotFoundError) as e:  # a bad option or value, a --config file's errors
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    verbose = any(a in ("-v", "--verbose") for a in argv[:at])
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return _run(prog, cmd, ns, INTERRUPTED.get(names[0], "interrupted"))


def _run(prog: str, cmd: Command, ns: Namespace, interrupted: str) -> int:
    """Run a parsed command: 0; a user error as one line naming ``prog``, 2; Ctrl-C prints ``interrupted``
    (how to continue), 130. Any other exception is a bug and keeps its traceback."""
    try:
        check_text_options(ns.as_dict())
        _set_threads(ns)
        cmd.run(ns)
    except (UserError, FileNotFoundError, FileExistsError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    return 0


# --- scripts outside the package (studies/) -------------------------------------------------------------


def script_command(
    target: Callable,
    run: Callable[[Namespace], None],
    help: str,
    epilog: str,
    *,
    overrides: str | None = None,
    positional: bool = True,
    threads: bool = False,
) -> Command:
    """A command declared like ``unimae``'s, for a script of its own (a study): ``target``'s parameters as
    options (required ones positional unless ``positional`` is False), ``key=value`` tokens as
    ``overrides`` options when given, and ``--threads`` when ``threads``."""
    cmd = Command(make_parser(help, epilog), run, overrides=overrides)
    add_options(cmd, target, positional=positional)
    if threads:
        threads_option(cmd)
    return cmd


def run_script(
    prog: str, cmd: Command, argv: list[str] | None = None, interrupted: str = "interrupted"
) -> int:
    """``main`` for a script's one command: ``unimae``'s spellings, ``--threads`` applied, user errors as
    one line naming ``prog`` (exit 2)."""
    cmd.parser.prog = prog
    argv = normalize(list(sys.argv[1:] if argv is None else argv), cmd)
    try:
        ns = cmd.parser.parse_args(argv)
    except ArgumentError as e:
        print(f"{prog}: error: {one_line(e, argv, cmd)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return _run(prog, cmd, ns, interrupted)  # (which applies --threads)
