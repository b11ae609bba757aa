"""The member README of a delivery: header fields, the reducer's QA2 notes and the tree listing."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IdentifierError, ParseError
from ..ids import ProjectCode, Uid, eb_uids_in

_FIELD_RE = re.compile(r"^(?P<key>[A-Z][A-Za-z0-9 .()/_-]{1,60}?)\s*:\s*(?P<value>.*?)\s*$")
_SEPARATOR_RE = re.compile(r"^#{3,}\s*$")
_CASA_VERSION_RE = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[-.]\d+)?")
# What reducers leave when they do not fill the line in: 4.x, 5.6.x, X.Y.Z, <version>, ?, TBD.
_PLACEHOLDER_RE = re.compile(r"\d\.[xX*?]|\b[xX]\.[xXyY]|[<>?]|\bTBD\b|\bXXX\b", re.IGNORECASE)
_NOTES_KEY = "comments from reducer"
CASA_VERSION_KEY = "casa version used for reduction"


@dataclass
class Readme:
    """What a delivery README says. ``fields`` holds every ``Key: value`` line of the header."""

    path: str
    project: ProjectCode | None           # None only where a staff README may leave it out
    pi: str | None = None
    casa_version: str | None = None       # the version the CASA line names (None when absent or not a version)
    casa_version_text: str | None = None  # that line's value as written ("4.4.0", "4.x")
    casa_version_problem: str | None = None   # why the line names no version (see casa_version_problem)
    casa_version_line: int | None = None
    cycle: str | None = None
    sb_name: str | None = None
    title: str | None = None
    qa2_notes: str = ""
    tree: str | None = None
    ebs: list[Uid] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def casa_version_problem(value: str) -> str | None:
    """The one verdict on a ``CASA version used for reduction:`` value: None for a version
    (``4.4.0``, ``5.1.1-5``, ``6.5.4.9 (pipeline 2023.1.0.124)``), else what is wrong with it.

    A placeholder left in a template (``4.x``, ``5.6.x``, ``X.Y.Z``, ``<version>``, ``TBD``) and a value
    that is no version at all (``unknown``, empty) are both problems; check, validate and package all ask
    this function (via ``parse_readme_text``), so they cannot disagree.

    Parameters
    ----------
    value : str
        The value after ``CASA version used for reduction:``.

    Returns
    -------
    str | None
        None for a version, else what is wrong with the value.
    """
    value = value.strip()
    if not value:
        return "the CASA version line is empty"
    if _PLACEHOLDER_RE.search(value):
        return f"'{value}' is a placeholder, not a CASA version"
    if not _CASA_VERSION_RE.search(value):
        return f"'{value}' is not a CASA version"
    return None


def parse_readme_text(text: str, path: str = "README", require_project: bool = True) -> Readme:
    """Parse README text, delivered or written by a reducer.

    Parameters
    ----------
    text : str
        The README's text.
    path : str
        The name used in error messages.
    require_project : bool
        A delivered README starts with ``Project code:``; a staff README may leave it to the packager
        (``False``).

    Returns
    -------
    Readme
        Header fields, QA2 notes, tree, EBs; the CASA version line read with ``casa_version_problem``
        (a bad value is recorded on the model, not raised, so every caller gives the same verdict).

    Raises
    ------
    ParseError
        With the line number: binary data, no ``Project code:`` line (when required), a malformed code.
    """
    if "\x00" in text:
        raise ParseError(f"{path}: line 1: binary data, not a README text", "fetch the README again")
    lines = text.splitlines()
    fields: dict[str, tuple[int, str]] = {}
    notes: list[str] = []
    in_notes = False
    header_done = False
    for number, line in enumerate(lines, 1):
        if _SEPARATOR_RE.match(line):
            if in_notes:
                in_notes = False
                header_done = True
            continue
        if in_notes:
            notes.append(line)
            continue
        if header_done:
            continue
        m = _FIELD_RE.match(line)
        if m:
            key = m["key"].strip().lower()
            fields.setdefault(key, (number, m["value"]))
            if key == _NOTES_KEY:
                in_notes = True
                if m["value"]:
                    notes.append(m["value"])
    project = None
    if "project code" not in fields:
        if require_project:
            raise ParseError(f"{path}: no 'Project code:' line; this is not an ALMA delivery README",
                             "the member README starts with 'Project code: YYYY.C.NNNNN.T'")
    else:
        number, code = fields["project code"]
        try:
            project = ProjectCode.parse(code)
        except IdentifierError as exc:
            raise ParseError(f"{path}: line {number}: {exc.message}", exc.hint) from None
    casa_version = casa_text = problem = casa_line = None
    if CASA_VERSION_KEY in fields:
        casa_line, casa_text = fields[CASA_VERSION_KEY]
        problem = casa_version_problem(casa_text)
        if problem is None:
            casa_version = _CASA_VERSION_RE.search(casa_text).group(0)

    def get(key: str) -> str | None:
        value = fields.get(key, (0, ""))[1]
        return value or None

    ebs = eb_uids_in(text)
    return Readme(
        path=path, project=project, pi=get("pi name"), casa_version=casa_version, casa_version_text=casa_text,
        casa_version_problem=problem, casa_version_line=casa_line,
        cycle=get("cycle"), sb_name=get("sb name"), title=get("project title"),
        qa2_notes="\n".join(notes).strip(), tree=_tree(lines, project.code) if project else None, ebs=ebs,
        fields={k: v for k, (_, v) in fields.items()},
    )


def _tree(lines: list[str], project: str) -> str | None:
    """The tree listing at the end of the README (from the line naming the project)."""
    for i, line in enumerate(lines):
        if line.strip() == project or line.strip().rstrip("/") == project:
            return "\n".join(lines[i:]).strip()
    return None


def read_readme_text(path: str | Path) -> str:
    """A README's text in any encoding ALMA used (utf-8 or latin-1).

    Parameters
    ----------
    path : str | Path
        The README file.

    Returns
    -------
    str
        Its text.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_readme(path: str | Path, require_project: bool = True) -> Readme:
    """Read and parse a README file (see ``parse_readme_text``).

    Parameters
    ----------
    path : str | Path
        The README file.
    require_project : bool, default True
        Ask for a project code (a staff README may leave it to the packager).

    Returns
    -------
    Readme
        The README's fields.
    """
    return parse_readme_text(read_readme_text(path), str(path), require_project)


def reducer_section(text: str) -> str:
    """The reducer's part of a delivered README (its header fields and QA2 notes): the first block
    between ``#####`` lines that holds a ``Key: value`` line; the whole text when there is none.

    Parameters
    ----------
    text : str
        A delivered README's text.

    Returns
    -------
    str
        The reducer's part of it.
    """
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if _SEPARATOR_RE.match(line):
            blocks.append([])
        else:
            blocks[-1].append(line)
    for block in blocks:
        if any(_FIELD_RE.match(line) for line in block):
            return "\n".join(block).strip() + "\n"
    return text.strip() + "\n"
