"""CASA task calls run and recorded the way the pipeline's ``casa_commands.log`` records them."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

WRAP = 100


def render_call(task: str, kwargs: dict[str, Any], width: int = WRAP) -> str:
    """A call as casa_commands.log holds it: arguments wrapped at ``width``, continuation lines
    indented under the opening bracket (every break falls between two arguments).

    Parameters
    ----------
    task : str
        The task name.
    kwargs : dict[str, Any]
        Its arguments.
    width : int, default WRAP
        The line width to wrap at (characters).

    Returns
    -------
    str
        The call, possibly on several lines.
    """
    indent = " " * (len(task) + 1)
    lines, line = [], f"{task}("
    args = [f"{k}={v!r}" for k, v in kwargs.items()]
    for i, arg in enumerate(args):
        piece = arg + (", " if i < len(args) - 1 else ")")
        if len(line) + len(piece.rstrip()) > width and not line.endswith("("):
            lines.append(line.rstrip())
            line = indent
        line += piece
    if not args:
        line += ")"
    lines.append(line.rstrip())
    return "\n".join(lines)


class CommandRecorder:
    """Runs casatasks (inside a CASA child) and keeps every call, and stage comments, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def stage(self, text: str) -> None:
        """Record a comment line (``# text``) that names the stage the next calls belong to.

        Parameters
        ----------
        text : str
            The stage's name.
        """
        self.lines.append(f"# {text}")

    def __call__(self, task: str, **kwargs: Any) -> Any:
        """Run the casatasks task ``task`` with ``kwargs`` and record the call; returns what the task returns."""
        import casatasks

        self.lines.append(render_call(task, kwargs))
        started = time.monotonic()
        value = getattr(casatasks, task)(**kwargs)
        print(f"running {task} took {time.monotonic() - started:.1f} s", flush=True)
        return value

    def write(self, path: Path) -> Path:
        """Write the recorded calls, one per line (the form of a pipeline's casa_commands.log); returns ``path``.

        Parameters
        ----------
        path : Path
            The file to write.

        Returns
        -------
        Path
            ``path``.
        """
        Path(path).write_text("\n".join(self.lines) + "\n")
        return Path(path)
