"""Root typer app: global options, logging, and the one-line error contract."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

import typer

from .. import __version__
from ..errors import AlmadeliverError, UsageError

app = typer.Typer(
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
