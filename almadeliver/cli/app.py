"""Root typer app: global options, logging, and the one-line error contract."""
from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from ..errors import AlmadeliverError, UsageError

#: The modules that register the commands, in the order of ``almadeliver --help``: the mission first,
#: then the tools. None is imported until its command runs (``almadeliver --help`` stays fast).
COMMAND_MODULES = ("query_cmds", "download_cmds", "validate_cmds", "restore_cmds", "image_cmds", "recalibrate_cmds",
                   "package_cmds", "scale_cmds", "sim_cmds", "serve_cmds", "casa_cmds")


_COMMAND_RE = re.compile(r'^@app\.command\("([\w-]+)"\).*?\) -> None:\s*"""(.*?)(?:\n\n|""")', re.S | re.M)


def command_index() -> dict[str, tuple[str, str]]:
    """Each command's module and the first paragraph of its docstring, read from the source (no import:
    ``tests/test_cli_polish.py`` checks that it matches the commands' own help)."""
    index: dict[str, tuple[str, str]] = {}
    for module in COMMAND_MODULES:
        for name, doc in _COMMAND_RE.findall((Path(__file__).parent / f"{module}.py").read_text()):
            index[name] = (module, " ".join(doc.split()))
    return index


class LazyGroup(TyperGroup):
    """The root group: lists the commands from ``command_index`` and imports a command's module only
    when that command is resolved (its options, its help or its run)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.index = command_index()
        for name, (_module, text) in self.index.items():
            self.commands.setdefault(name, TyperCommand(name, help=text, short_help=text))

    def load(self, name: str):
        """The full command ``name`` (its options included): its module is imported and registers it on ``app``."""
        if name in self.index and not hasattr(self.commands[name], "almadeliver_loaded"):
            importlib.import_module(f"{__package__}.{self.index[name][0]}")
            for info in app.registered_commands:
                if info.name == name:
                    command = typer.main.get_command_from_info(
                        info, pretty_exceptions_short=app.pretty_exceptions_short,
                        rich_markup_mode=app.rich_markup_mode)
                    command.almadeliver_loaded = True
                    self.commands[name] = command
        return self.commands.get(name)

    def resolve_command(self, ctx, args):
        """Load the command named by ``args[0]``, then resolve it."""
        if args:
            self.load(args[0])
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=LazyGroup,
    rich_markup_mode=None,          # plain help: rich would add 1-2 s to every start (and boxes to errors)
    help="almadeliver: query, download, validate, restore, image and package ALMA deliveries.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class State:
    """The global options of the command line (``--debug``, ``-v``, ``-q``) for the commands to read."""
    debug: bool = False
    verbose: int = 0
    quiet: bool = False


state = State()
log = logging.getLogger("almadeliver")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"almadeliver {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="More detail (-vv for debug logs)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors and results; no progress bars."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback when something fails."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    state.debug, state.verbose, state.quiet = debug, verbose, quiet
    level = logging.WARNING if quiet else (logging.INFO if verbose == 1 else logging.DEBUG if verbose > 1 else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)


def fail_line(err: BaseException) -> str:
    """The one line printed for an error."""
    return f"error: {err}"


INTERRUPTED = "interrupted; run the same command again to resume"


def _interrupted(argv: list[str] | None) -> int:
    """Ctrl-C: one line, exit 130 at once (the journal is saved by then; worker threads may still be
    blocked in a read, so the process ends without waiting for them)."""
    typer.echo(("\r" if sys.stderr.isatty() else "") + INTERRUPTED, err=True)
    if argv is None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)
    return 130


#: The root's options, accepted before or after the command (``almadeliver validate X -q``).
GLOBAL_FLAGS = ("-q", "--quiet", "--debug", "-v", "-vv", "-vvv", "--verbose")


def global_first(args: list[str]) -> list[str]:
    """``args`` with the global flags that follow the command moved before it (click reads them
    only there). Words after ``--`` are left alone."""
    out, moved, seen_command = [], [], False
    for i, word in enumerate(args):
        if word == "--":
            out += args[i:]
            break
        if seen_command and word in GLOBAL_FLAGS:
            moved.append(word)
            continue
        if not word.startswith("-"):
            seen_command = True
        out.append(word)
    return moved + out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``almadeliver`` command. Returns (and exits with) the exit code."""
    args = global_first(sys.argv[1:] if argv is None else list(argv))
    try:
        result = app(args=args, prog_name="almadeliver", standalone_mode=False)
        code = result if isinstance(result, int) else 0   # click returns typer.Exit's code here
        if code == 130:                                    # typer turned a KeyboardInterrupt into a silent 130
            return _interrupted(argv)
    except typer.Exit as exc:
        code = exc.exit_code
        if code == 130 and isinstance(exc.__cause__, KeyboardInterrupt):   # typer's silent Ctrl-C
            return _interrupted(argv)
    except typer.Abort:
        return _interrupted(argv)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click): never a traceback
        exc.show()
        code = exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(argv)
    except AlmadeliverError as exc:
        if state.debug and not isinstance(exc, UsageError):   # bad input is one line, --debug or not
            raise
        typer.echo(fail_line(exc), err=True)
        code = exc.exit_code
    except Exception as exc:  # an unexpected failure still gets one line without --debug
        if state.debug:
            raise
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        code = 1
    if argv is None:
        sys.exit(code)
    return code
