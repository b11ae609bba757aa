"""Pipeline flag templates (``<EB>_flagtemplate.txt``, ``<EB>_flagtargetstemplate.txt``): flagdata commands."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParseError


@dataclass
class FlagCommand:
    """One flagdata command of a flag template: its line number and its parameters."""
    line: int
    params: dict[str, str]

    @property
    def mode(self) -> str:
        """The flagdata mode (``manual`` when the line does not say)."""
        return self.params.get("mode", "manual")

    @property
    def reason(self) -> str | None:
        """The ``reason`` the line gives, if any."""
        return self.params.get("reason")


@dataclass
class FlagTemplate:
    """A parsed pipeline flag template (``*.flagtemplate.txt``): its commands and the oddities tolerated."""
    path: str
    commands: list[FlagCommand] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)    # tolerated oddities, e.g. a missing closing quote


def _parse_command(line: str, where: str, notes: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        if line[i] == "#":      # a trailing comment
            break
        eq = line.find("=", i)
        space = next((j for j in range(i, n) if line[j].isspace()), n)
        if eq < 0 or eq > space:
            raise ParseError(f"{where}: '{line[i:space]}' is not key=value",
                             "flag commands are key=value pairs, e.g. mode='manual' antenna='DV13' reason='x'")
        key = line[i:eq].strip()
        if not key.isidentifier():
            raise ParseError(f"{where}: '{key}' is not a flagdata parameter name", "e.g. antenna='DV13'")
        i = eq + 1
        if i < n and line[i] in "'\"":
            quote = line[i]
            end = line.find(quote, i + 1)
            if end < 0:
                notes.append(f"{where}: closing quote missing after {key}=; value taken to the end of the line")
                value, i = line[i + 1:], n
            else:
                value, i = line[i + 1:end], end + 1
        else:
            end = next((j for j in range(i, n) if line[j].isspace()), n)
            value, i = line[i:end], end
        if key in params:
            raise ParseError(f"{where}: '{key}' given twice", "give each parameter once per line")
        params[key] = value
    return params


def parse_flagtemplate_text(text: str, path: str = "flagtemplate.txt") -> FlagTemplate:
    """Parse a flag template; ParseError names the line that is not a flagdata command.

    Parameters
    ----------
    text : str
        The template's text.
    path : str, default "flagtemplate.txt"
        Its name, for the error messages.

    Returns
    -------
    FlagTemplate
        The flagdata commands of the template.
    """
    result = FlagTemplate(path)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        params = _parse_command(line, f"{path}: line {number}", result.notes)
        result.commands.append(FlagCommand(number, params))
    return result


def parse_flagtemplate(path: str | Path) -> FlagTemplate:
    """Read a flag template file (see ``parse_flagtemplate_text``).

    Parameters
    ----------
    path : str | Path
        The flag template file.

    Returns
    -------
    FlagTemplate
        The flagdata commands of the template.
    """
    return parse_flagtemplate_text(Path(path).read_text(encoding="utf-8", errors="replace"), str(path))
