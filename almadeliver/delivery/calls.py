"""CASA task calls written as text (calapply.txt, casa_commands.log), read with a literal parser.

Nothing is ever evaluated: each call is parsed with ``ast`` and every argument must be a Python
literal (strings, numbers, booleans, None, lists, tuples, dicts of those).
"""
from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..errors import ParseError


@dataclass
class TaskCall:
    """One ``task(key=value, ...)`` call and the line it starts on."""

    task: str
    kwargs: dict[str, Any]
    line: int
    text: str = field(repr=False, default="")

    def render(self) -> str:
        """The call as CASA would log it (one line).

        Returns
        -------
        str
            ``task(arg=value, ...)`` on one line.
        """
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.task}({args})"


def parse_call(text: str, line: int = 1, source: str = "<text>") -> TaskCall:
    """Parse one call; ParseError names ``source`` and ``line`` when it is not a literal call.

    Parameters
    ----------
    text : str
        The text of one task call.
    line : int, default 1
        The line it starts at in ``source`` (1-based), for the errors.
    source : str, default "<text>"
        Where the text comes from, for the errors.

    Returns
    -------
    TaskCall
        The task name and its literal arguments.

    Raises
    ------
    ParseError
        The text is not a call with literal keyword arguments only.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ParseError(f"{source}:{line}: not a valid call ({exc.msg})",
                         "each entry must look like task(name=value, ...)") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
        raise ParseError(f"{source}:{line}: expected task(name=value, ...) with keyword arguments only")
    kwargs: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise ParseError(f"{source}:{line}: '**' arguments are not allowed")
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise ParseError(f"{source}:{line}: argument {kw.arg}= is not a literal value",
                             "only strings, numbers, booleans, lists and dicts are accepted") from None
    return TaskCall(node.func.id, kwargs, line, text)


def iter_calls(text: str, source: str = "<text>") -> Iterator[TaskCall]:
    """Every call in ``text``; a call may span several lines; ``#`` comments and blank lines skipped.

    Call boundaries come from Python's tokenizer (brackets and strings balanced), so a ')' inside a
    string never ends a call early.

    Parameters
    ----------
    text : str
        The text of a script or command log.
    source : str, default "<text>"
        Where the text comes from, for the errors.

    Raises
    ------
    ParseError
        A call is not closed, is indented, or text that is not a call follows (when the iterator reaches
        it).
    """
    lines = text.splitlines(keepends=True)
    start: int | None = None
    depth = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                            tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            if start is None:
                start = tok.start[0]
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
                if depth == 0:
                    end = tok.end[0]
                    yield parse_call("".join(lines[start - 1:end]), start, source)
                    start = None
    except tokenize.TokenError:
        raise ParseError(f"{source}:{start}: call not closed (unbalanced brackets or quotes)") from None
    except IndentationError as exc:
        raise ParseError(f"{source}:{exc.lineno}: unexpected indentation") from None
    if start is not None:
        raise ParseError(f"{source}:{start}: text after the last call is not a call")

