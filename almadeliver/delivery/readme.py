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
_NOTES_KEY = "comments from reducer"


@dataclass
class Readme:
    """What a delivery README says. ``fields`` holds every ``Key: value`` line of the header."""

    path: str
    project: ProjectCode
    pi: str | None = None
    casa_version: str | None = None
    cycle: str | None = None
    sb_name: str | None = None
    title: str | None = None
    qa2_notes: str = ""
    tree: str | None = None
    ebs: list[Uid] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def parse_readme_text(text: str, path: str = "README") -> Readme:
    """Parse README text. Raises ParseError (with the line number) when it is not a delivery README."""
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
    if "project code" not in fields:
        raise ParseError(f"{path}: no 'Project code:' line; this is not an ALMA delivery README",
                         "the member README starts with 'Project code: YYYY.C.NNNNN.T'")
    number, code = fields["project code"]
    try:
        project = ProjectCode.parse(code)
    except IdentifierError as exc:
        raise ParseError(f"{path}: line {number}: {exc.message}", exc.hint) from None
    casa_version = None
    if "casa version used for reduction" in fields:
        number, value = fields["casa version used for reduction"]
        m = _CASA_VERSION_RE.search(value)
        if value and not m:
            raise ParseError(f"{path}: line {number}: '{value}' is not a CASA version",
                             "expected e.g. 'CASA version used for reduction: 4.4.0'")
        casa_version = m.group(0) if m else None

    def get(key: str) -> str | None:
        value = fields.get(key, (0, ""))[1]
        return value or None

    ebs = eb_uids_in(text)
    return Readme(
        path=path, project=project, pi=get("pi name"), casa_version=casa_version,
        cycle=get("cycle"), sb_name=get("sb name"), title=get("project title"),
        qa2_notes="\n".join(notes).strip(), tree=_tree(lines, project.code), ebs=ebs,
        fields={k: v for k, (_, v) in fields.items()},
    )


def _tree(lines: list[str], project: str) -> str | None:
    """The tree listing at the end of the README (from the line naming the project)."""
    for i, line in enumerate(lines):
        if line.strip() == project or line.strip().rstrip("/") == project:
            return "\n".join(lines[i:]).strip()
    return None


def parse_readme(path: str | Path) -> Readme:
    """Read and parse a README file (any encoding ALMA used: utf-8 or latin-1)."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_readme_text(text, str(path))


def reducer_section(text: str) -> str:
    """The reducer's part of a delivered README (its header fields and QA2 notes): the first block
    between ``#####`` lines that holds a ``Key: value`` line; the whole text when there is none."""
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
