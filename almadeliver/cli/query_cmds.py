"""query: the project view of what the archive holds."""
from __future__ import annotations

import io
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, List, Literal, Optional

import typer

from ..archive.client import ARCHIVE_ENV
from ..archive.model import Mous, Project, ProjectView
from ..errors import UsageError
from ..ids import TarballKind
from ..units import human_size
from .app import app, state

if TYPE_CHECKING:   # astropy and pyvo load when a query runs, not for --help or a bad option
    from ..archive.client import ArchiveClient
    from ..archive.science import ScienceResult
    from ..archive.tap import Selection


class View(str, Enum):
    """``query --view``: one line per project, per MOUS, or per raw EB."""
    project = "project"
    mous = "mous"
    raw = "raw"
    rows = "rows"


class Format(str, Enum):
    """``query --format``: a text table, the project view as JSON, or CSV."""
    table = "table"
    json = "json"
    csv = "csv"
    ecsv = "ecsv"
    votable = "votable"
    fits = "fits"


#: ``-o FILE``: the format its suffix names (``--format`` may be left out; a different one is refused).
SUFFIX_FORMATS = {".txt": Format.table, ".json": Format.json, ".csv": Format.csv, ".ecsv": Format.ecsv,
                  ".xml": Format.votable, ".vot": Format.votable, ".votable": Format.votable, ".fits": Format.fits}


def output_format(output: Path | None, fmt: Format | None) -> Format:
    """The format to write: ``--format``, else the suffix of ``-o``, else the terminal table.

    Raises
    ------
    UsageError
        ``-o`` in a folder that does not exist; a suffix that names no format (without ``--format``)
        or another format than ``--format``; FITS without ``-o``.
    """
    if output is None:
        if fmt is Format.fits:
            raise UsageError("--format fits writes a binary file", "name it with -o answer.fits")
        return fmt or Format.table
    if not output.parent.is_dir():
        raise UsageError(f"-o {output}: folder {output.parent} does not exist", "create it or name another file")
    by_suffix = SUFFIX_FORMATS.get(output.suffix.lower())
    if fmt is None and by_suffix is None:
        raise UsageError(f"-o {output}: the suffix {output.suffix or '(none)'!r} names no format",
                         f"name a {', '.join(SUFFIX_FORMATS)} file, or give --format")
    if fmt is not None and by_suffix is not None and fmt is not by_suffix:
        raise UsageError(f"-o {output} names {by_suffix.value} but --format is {fmt.value}",
                         "make the suffix and --format agree (or leave --format out)")
    return fmt or by_suffix


def _grid(headers: list[str], rows: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    return [indent + "  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [headers, *rows]]


def _qa2(m: Mous) -> str:
    return "?" if m.qa2_passed is None else "pass" if m.qa2_passed else "fail"


def _sizes(m: Mous, external: bool = False) -> list[str]:
    from ..archive.projectview import PRODUCT_KINDS

    kinds = [PRODUCT_KINDS, (TarballKind.AUXILIARY,), (TarballKind.RAW,)] + [(TarballKind.EXTERNAL,)] * external
    return [human_size(m.size(*k)) for k in kinds]


def _has_external(mous: list[Mous]) -> bool:
    return any(f.kind is TarballKind.EXTERNAL for m in mous for f in m.files)


def _project_block(p: Project) -> list[str]:
    rights = "Public" if p.data_rights == "Public" else f"Proprietary until {p.release_date or '?'}"
    lines = [f"{p.code}  cycle {p.cycle}  {rights}" + (f" (released {p.release_date})" if p.data_rights == "Public" and p.release_date else ""),
             f"  title    {p.title}", f"  PI       {p.pi}",
             f"  bands    {' '.join(p.bands)}", f"  targets  {', '.join(p.targets)}"]
    sg = gous = object()
    group: list[Mous] = []

    external = _has_external(p.mous)

    def flush():
        if group:
            grid = _grid(["MOUS", "array", "QA2", "EBs", "products", "auxiliary", "raw"] + ["external"] * external,
                         [[m.uid, m.array, _qa2(m), str(len(m.ebs)), *_sizes(m, external)] for m in group], "      ")
            lines.append(grid[0])
            for m, line in zip(group, grid[1:]):
                lines.append(line)
                lines.append(f"        EBs {' '.join(m.ebs) or 'none listed'}")
                if m.shared_files:
                    lines.append(f"        + {len(m.shared_files)} files listed under another MOUS (fetched once)")
                for f in m.files:
                    if f.kind is TarballKind.EXTERNAL:
                        lines.append(f"        external {f.name} ({human_size(f.size)}; download --what external)")
            group.clear()

    for m in p.mous:
        if m.sg != sg:
            flush()
            sg, gous = m.sg, object()
            lines.append(f"  SG {m.sg or 'unknown (no readable product tarball header)'}")
        if m.gous != gous:
            flush()
            gous = m.gous
            lines.append(f"    GOUS {m.gous}")
        group.append(m)
    flush()
    files = [f for m in p.mous for f in m.files]
    lines.append(f"  project total {human_size(sum(f.size for f in files))} in {len(files)} files")
    return lines


def render(view: ProjectView, how: View) -> str:
    """The terminal view."""
    from ..archive.projectview import PRODUCT_KINDS, eb_table, summary

    lines: list[str] = []
    if how is View.project:
        for p in view.projects:
            lines += _project_block(p) + [""]
    elif how is View.mous:
        external = _has_external([m for p in view.projects for m in p.mous])
        rows = [[p.code, m.uid, m.array, _qa2(m), str(len(m.ebs)), " ".join(m.bands), *_sizes(m, external)]
                for p in view.projects for m in p.mous]
        lines += _grid(["project", "MOUS", "array", "QA2", "EBs", "bands", "products", "auxiliary", "raw"]
                       + ["external"] * external, rows) + [""]
    else:
        t = eb_table(view)
        rows = [[str(r["row"]), r["project"], r["mous"], r["eb"], human_size(int(r["raw_bytes"])) if r["raw_file"] else "-",
                 human_size(int(r["delivery_bytes"])), r["shares_with"] or "-"] for r in t]
        lines += _grid(["row", "project", "MOUS", "EB", "raw", "delivery", "same delivery files as rows"], rows) + [""]
    external = [f for f in view.files() if f.kind is TarballKind.EXTERNAL]
    files = [f for f in view.files() if f.kind is not TarballKind.EXTERNAL]   # what `download` fetches by default
    total = sum(f.size for f in files)
    by_kind = {k: sum(f.size for f in files if f.kind in kinds) for k, kinds in
               (("products", PRODUCT_KINDS), ("auxiliary", (TarballKind.AUXILIARY,)), ("raw", (TarballKind.RAW,)))}
    lines.append(f"total to download: {human_size(total)} in {len(files)} files ("
                 + ", ".join(f"{k} {human_size(v)}" for k, v in by_kind.items()) + ")")
    if external:
        lines.append(f"external products: {human_size(sum(f.size for f in external))} in {len(external)} files "
                     "(download --what external)")
    locked = [f for f in files if not f.readable]
    if locked:
        lines.append(f"{len(locked)} files are proprietary: downloading them needs a login")
    lines.append(summary(view))
    return "\n".join(lines) + "\n"


def formatted(view: ProjectView, how: View, fmt: Format, science: ScienceResult | None = None) -> str:
    """The answer as text; with ``science`` (archive.science) the tables are the science tables
    (archive.sciencetable: ObsCore names, units, UCDs) and the terminal view adds the coverage."""
    from ..archive import sciencetable
    from .query_science import rows_lines, science_lines

    if fmt is Format.table:
        if science is not None and how is View.rows:
            return "\n".join(rows_lines(science)) + "\n\n" + render(view, View.mous).split("\n\n", 1)[-1]
        extra = science_lines(science) if science is not None and (science.requests or science.targets) else []
        return render(view, View.mous if how is View.rows else how) + ("\n".join(extra) + "\n" if extra else "")
    if fmt is Format.json:
        return view.to_json() + "\n"
    table = answer_table(view, how, science)
    if science is not None:
        return sciencetable.write(table, fmt.value)
    if fmt is Format.votable:
        from astropy.io.votable import from_table

        buf = io.BytesIO()
        from_table(table).to_xml(buf)
        return buf.getvalue().decode()
    buf = io.StringIO()
    table.write(buf, format="ascii.csv" if fmt is Format.csv else "ascii.ecsv")
    return buf.getvalue()


def answer_table(view: ProjectView, how: View, science: ScienceResult | None = None):
    """The answer as an astropy Table: the science tables (with units) when ``science`` is given."""
    from ..archive import sciencetable
    from ..archive.projectview import eb_table, mous_table

    if science is not None:
        return (sciencetable.raw_table(view) if how is View.raw else sciencetable.rows_table(science)
                if how is View.rows else sciencetable.mous_table(science))
    return eb_table(view) if how is View.raw else mous_table(view)


@app.command("query")
def query_cmd(
    ids: Optional[List[str]] = typer.Argument(None, help="Project codes (wildcards * ?) and MOUS/GOUS uids (either form)."),
    ra: Optional[str] = typer.Option(None, "--ra", help="Cone centre RA: degrees or 05h35m17s / 05:35:17."),
    dec: Optional[str] = typer.Option(None, "--dec", help="Cone centre Dec: degrees or -05d23m28s / -05:23:28."),
    radius: str = typer.Option("1arcmin", "--radius", help="Cone radius: degrees or with units (30arcsec)."),
    target: Optional[str] = typer.Option(None, "--target", help="A target name, resolved by astropy (needs a resolver)."),
    band: Optional[List[int]] = typer.Option(None, "--band", help="ALMA band (1-10); repeat for several."),
    public: Optional[bool] = typer.Option(None, "--public/--proprietary", help="Only public, or only proprietary data."),
    start: Optional[str] = typer.Option(None, "--start", help="Observed on or after this date (2016-10-01)."),
    end: Optional[str] = typer.Option(None, "--end", help="Observed on or before this date."),
    keyword: Optional[str] = typer.Option(None, "--keyword", help="Science keyword (substring, any case)."),
    where: Optional[List[str]] = typer.Option(None, "--where", help="Raw ADQL condition on ivoa.obscore; repeatable."),
    archive: Optional[str] = typer.Option(None, "--archive", envvar=ARCHIVE_ENV,
                                          help="eso, nrao, naoj or a URL (default almascience.org)."),
    freq: Optional[List[str]] = typer.Option(None, "--freq", help="Sky frequency or range covered by a spw: 230.5GHz, 84..116GHz, 1.3mm; repeatable."),
    line: Optional[List[str]] = typer.Option(None, "--line", help="A line: CO(2-1) (built-in table) or a rest frequency 230.538GHz; repeatable."),
    z: Optional[float] = typer.Option(None, "--z", help="Redshift of --line (observed = rest / (1 + z))."),
    vlsr: Optional[float] = typer.Option(None, "--vlsr", help="LSRK velocity of --line, km/s."),
    convention: Literal["radio", "optical", "relativistic"] = typer.Option(
        "radio", "--velocity-convention", help="Doppler convention of --vlsr."),
    resolution: Optional[str] = typer.Option(None, "--resolution", help="Spatial resolution at most (0.5arcsec) or a range (0.1..0.5arcsec)."),
    sensitivity: Optional[str] = typer.Option(None, "--sensitivity", help="Sensitivity in 10 km/s at most, mJy/beam (at the line when given)."),
    velocity_resolution: Optional[str] = typer.Option(None, "--velocity-resolution", help="Channel width at most, km/s (at the line when given)."),
    targets: Optional[Path] = typer.Option(None, "--targets", help="Targets file: CSV/ECSV/VOTable (ra, dec, name) or one NAME or 'RA DEC' per line."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the answer: FILE.png, .pdf or .svg."),
    view: View = typer.Option(View.project, "--view", help="project (tree), mous (a line per MOUS), raw (a line per EB), rows (a line per ObsCore row)."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="table (default), json (the download plan), csv, "
                                         "ecsv, votable, fits (with -o); default: the suffix of -o."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of the terminal "
                                          "(.txt .json .csv .ecsv .xml/.vot .fits pick the format)."),
    files: Optional[List[str]] = typer.Option(None, "--files", metavar="PATTERN", help="Also show the bytes `download "
                                              "--files PATTERN` would fetch against the whole tarballs; repeatable."),
    cutout: bool = typer.Option(False, "--cutout", help="Also show the bytes of the SODA cutouts (the cone, and "
                                "--freq or --line with --line-width) against the whole tarballs."),
    line_width: Optional[float] = typer.Option(None, "--line-width", help="With --cutout: full width around --line, km/s."),
) -> None:
    """Ask the archive and answer in the project view: one block per project, a line per MOUS."""
    if target and (ra or dec):
        raise UsageError("--target and --ra/--dec both given", "give a target name or coordinates, not both")
    if bool(ra) != bool(dec):
        raise UsageError("a cone needs both --ra and --dec", "give both, or --target NAME")
    from ..archive.client import ArchiveClient
    from ..archive.projectview import summary
    from ..archive.tap import Selection, cone, resolve_target

    fmt = output_format(output, fmt)               # a bad -o is said before the archive is asked
    region = resolve_target(target, radius) if target else cone(ra, dec, radius) if ra else None
    selection = Selection.from_ids(ids or [], cone=region, bands=band or [], public=public, start=start,
                                   end=end, keyword=keyword, where=where or [])
    science = _science(selection, ArchiveClient(archive), freq or [], line or [], z, vlsr, convention, resolution,
                       sensitivity, velocity_resolution, targets, radius, plot)
    result = science.view
    if fmt is Format.fits:
        answer_table(result, view, science).write(output, format="fits", overwrite=True)
    else:
        text = formatted(result, view, fmt, science)
    if output:
        if fmt is not Format.fits:
            output.write_text(text)
        if not state.quiet:
            typer.echo(f"{summary(result)}\nwrote {output}")
    else:
        typer.echo(text, nl=False)
        if fmt is not Format.table and not state.quiet:
            typer.echo(summary(result), err=True)
    if files or cutout:
        typer.echo(_selection_bytes(result, ArchiveClient(archive), tuple(files or ()), cutout, region, freq, line,
                                    z, line_width), err=output is None and fmt is not Format.table)
    if plot:
        from ..archive.plots import plot_answer

        plot_answer(science, plot)
        if not state.quiet:
            typer.echo(f"drew {plot}", err=output is None and fmt is not Format.table)


def _selection_bytes(view: ProjectView, client: ArchiveClient, files: tuple[str, ...], cutout: bool, region,
                     freq: list[str] | None, line: list[str] | None, z: float | None, line_width: float | None) -> str:
    """The line `download --files/--cutout` would print for this answer (its products and auxiliary tarballs)."""
    from ..transfer.plan import WHAT, make_plan
    from ..transfer.select import FileSelection, make_cutout, select_files
    from .download_cmds import selection_line

    cut = None
    if cutout:
        cut = make_cutout(*((repr(region.ra), repr(region.dec), repr(region.radius)) if region else (None, None, None)),
                          freq=(freq or [None])[0], line=(line or [None])[0], z=z, width_kms=line_width)
    plan = make_plan(view, WHAT["products"] | WHAT["auxiliary"])
    return selection_line(select_files(plan, view, client, FileSelection(files, cut)))


def _science(selection: Selection, client: ArchiveClient, freq: list[str], line: list[str], z, vlsr, convention: str,
             resolution: str | None, sensitivity: str | None, velocity_resolution: str | None,
             targets: Path | None, radius: str, plot: Path | None) -> ScienceResult:
    """The science options checked (before any network call), then archive.science.science_query."""
    from ..archive.science import Limits, parse_resolution, science_query, spectral_requests
    from ..archive.spectral import parse_limit
    from ..archive.targets import read_targets, resolve_names
    from ..archive.tap import cone

    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--plot {plot}: unknown picture format", "name a .png, .pdf or .svg file")
    if plot is not None and not plot.parent.is_dir():
        raise UsageError(f"--plot {plot}: folder {plot.parent} does not exist", "create it or name another file")
    requests = spectral_requests(freq, line, z, vlsr, convention)
    limits = Limits(parse_resolution(resolution) if resolution else None,
                    parse_limit(sensitivity, "mJy/beam", "--sensitivity") if sensitivity else None,
                    parse_limit(velocity_resolution, "km/s", "--velocity-resolution") if velocity_resolution else None)
    entries = []
    if targets is not None:
        if selection.cone:
            raise UsageError("--targets and a cone (--ra/--dec/--target) both given", "give one of them")
        entries = resolve_names(read_targets(targets, cone("0", "0", radius).radius))
    return science_query(selection, client, requests, limits, entries)
