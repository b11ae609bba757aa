"""query by spectral line, frequency, resolution and target list; science tables; --plot (issue 20).

Against the local archive (real HTTP on 127.0.0.1) serving catalogues whose frequency_support is a
union of per-spw segments and whose s_region is a circle, polygon or union, as ALMA writes them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from astropy import units as u
from astropy.table import Table

from archive_catalogue import write_project

from almadeliver.archive.client import ArchiveClient
from almadeliver.archive.lines import LINES, find_line, sky_frequency_ghz
from almadeliver.archive.model import ProjectView
from almadeliver.archive.plots import plot_answer
from almadeliver.archive.science import Limits, science_query, spectral_requests
from almadeliver.archive.sciencetable import EXTRA
from almadeliver.archive.spectral import TOPO_TOLERANCE, parse_freq_range, parse_frequency_support
from almadeliver.archive.tap import Selection
from almadeliver.archive.targets import BATCH, Target, read_targets
from almadeliver.cli import main
from almadeliver.errors import UsageError
from almadeliver.sim.catalogue import Catalogue, find_projects
from almadeliver.sim.archive import LocalArchive

C = 299792458.0


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("science-archive")
    write_project(root, "2019.1.00458.S", n_mous=5, sources=2, spws=4, ebs_per_mous=2)
    write_project(root, "2018.1.00777.S", n_mous=4, sources=1, spws=2)
    return root


@pytest.fixture(scope="module")
def archive(root):
    with LocalArchive(root) as running:
        yield running


def _counting_client(url: str) -> tuple[ArchiveClient, list[str]]:
    client = ArchiveClient(url)
    calls: list[str] = []
    client.session.hooks["response"].append(lambda r, *a, **k: calls.append(r.url) if "/tap/sync" in r.url else None)
    return client, calls


def _brute_force(root: Path, lo_ghz: float, hi_ghz: float) -> set[str]:
    """Every MOUS of the catalogues one of whose frequency_support ranges reaches [lo, hi] (its own regex)."""
    found = set()
    for folder in find_projects(root):
        for row in Catalogue.load(folder).obscore:
            for seg in re.findall(r"\[([^\]]+)\]", row["frequency_support"] or ""):
                a, b = map(float, re.match(r"([\d.]+)\.\.([\d.]+)GHz", seg).groups())
                pad = b * TOPO_TOLERANCE if " TOPO" in seg else 0.0
                if a - pad <= hi_ghz and b + pad >= lo_ghz:
                    found.add(row["member_ous_uid"])
    return found


# -- parsing ------------------------------------------------------------------------------------
def test_frequency_support_in_every_recorded_form():
    # astroquery alma/tests/test_alma_utils.py: no sensitivities
    spws = parse_frequency_support("[86.26..88.14GHz,976.56kHz, XX YY] U [88.15..90.03GHz,976.56kHz, XX YY] U "
                                   "[98.19..100.07GHz,976.56kHz, XX YY] U [100.15..102.03GHz,976.56kHz, XX YY]")
    assert [(s.lo_ghz, s.hi_ghz) for s in spws] == [(86.26, 88.14), (88.15, 90.03), (98.19, 100.07), (100.15, 102.03)]
    assert spws[0].resolution_hz == pytest.approx(976560) and spws[0].polarizations == "XX YY"
    # ALminer issue #8: TAP form with uJy, and the web export with a line/continuum type
    (s,) = parse_frequency_support("[239.50..241.37GHz,976.56kHz,1.7mJy/beam@10km/s,111.7uJy/beam@native, XX YY]")
    assert (s.sensitivity_10kms, s.sensitivity_native) == (pytest.approx(1.7), pytest.approx(0.1117))
    (s,) = parse_frequency_support("[686.49..688.37GHz,976.56kHz,52.20mJy/beam@10km/s,5.77uJy/beam@native, XX YY,line]")
    assert s.kind == "line" and s.channel_kms(687.0) == pytest.approx(976.56e3 / 687e9 * C / 1e3)
    (s,) = parse_frequency_support("[230.00..231.87GHz,31250.00kHz, XX YY TOPO]")
    assert s.frame == "TOPO" and s.covers(231.87 * (1 + TOPO_TOLERANCE / 2)) and not s.covers(232.0)
    assert parse_frequency_support(None) == [] and parse_frequency_support("") == []
    with pytest.raises(ValueError):
        parse_frequency_support("[no range here]")


def test_frequencies_lines_and_doppler():
    assert parse_freq_range("230.5GHz") == (230.5, 230.5)
    assert parse_freq_range("84..116GHz") == (84.0, 116.0)
    lo, hi = parse_freq_range("3.6..2.6mm")
    assert (lo, hi) == (pytest.approx((3.6 * u.mm).to(u.GHz, u.spectral()).value), pytest.approx((2.6 * u.mm).to(u.GHz, u.spectral()).value))
    assert parse_freq_range("1.3mm")[0] == pytest.approx(230.6095, rel=1e-5)
    for bad in ("230.5", "84..116", "5 kg", "-3GHz"):
        with pytest.raises(UsageError):
            parse_freq_range(bad)
    assert find_line("co 2-1") is find_line("CO(2-1)") and find_line("CO(2-1)").rest_ghz == 230.538
    assert all(line.source for line in LINES)
    with pytest.raises(UsageError, match="CO\\(1-0\\)"):
        find_line("unobtainium(1-0)")
    assert sky_frequency_ghz(230.538, z=0.0125) == pytest.approx(230.538 / 1.0125)
    for convention, eq in (("radio", u.doppler_radio), ("optical", u.doppler_optical), ("relativistic", u.doppler_relativistic)):
        expect = (250 * u.km / u.s).to(u.GHz, eq(230.538 * u.GHz)).value
        assert sky_frequency_ghz(230.538, vlsr_kms=250, convention=convention) == pytest.approx(expect)
    assert sky_frequency_ghz(230.538, vlsr_kms=250, convention="radio") != pytest.approx(
        sky_frequency_ghz(230.538, vlsr_kms=250, convention="optical"), rel=1e-9)
    with pytest.raises(UsageError):
        sky_frequency_ghz(230.538, z=0.1, vlsr_kms=3)
    with pytest.raises(UsageError, match="no ALMA band"):
        spectral_requests(["60GHz"], [])
    with pytest.raises(UsageError, match="--z"):
        spectral_requests([], [], z=0.1)


def test_targets_files(tmp_path):
    lines = tmp_path / "t.txt"
    lines.write_text("# my sources\nSgrB2 266.8351 -28.3850\n17h45m40s -29d00m28s\nNGC 253\n")
    t = read_targets(lines, 0.01)
    assert [x.name for x in t] == ["SgrB2", "17h45m40s -29d00m28s", "NGC 253"]
    assert t[1].ra == pytest.approx(266.41667, abs=1e-4) and t[2].ra is None
    Table({"name": ["a", "b"], "ra": [266.4, 10.0], "dec": [-28.9, -5.0]}).write(tmp_path / "t.csv")
    assert [(x.name, x.ra) for x in read_targets(tmp_path / "t.csv", 0.01)] == [("a", 266.4), ("b", 10.0)]
    ecsv = Table({"RAJ2000": [4.0] * u.hourangle, "DEJ2000": [-28.9] * u.deg, "radius": [30.0] * u.arcsec})
    ecsv.write(tmp_path / "t.ecsv")
    (x,) = read_targets(tmp_path / "t.ecsv", 0.01)
    assert (x.ra, x.dec, x.radius) == (pytest.approx(60.0), pytest.approx(-28.9), pytest.approx(30 / 3600))
    with pytest.raises(UsageError):
        read_targets(tmp_path / "missing.txt", 0.01)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UsageError):
        read_targets(tmp_path / "empty.txt", 0.01)


# -- the done-when: --line CO(2-1) --z 0.0125 -> plan.json -> download --------------------------
def test_line_at_redshift_lists_exactly_the_mous_whose_spws_cover_it(archive, root, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    assert main(["query", "--line", "CO(2-1)", "--z", "0.0125", "--archive", archive.url, "--format", "json",
                 "-o", str(plan)]) == 0
    view = ProjectView.from_json(plan.read_text())
    sky = 230.538 / 1.0125
    expected = _brute_force(root, sky, sky)
    assert {m.uid for p in view.projects for m in p.mous} == expected
    assert 2 <= len(expected) < 12                     # some MOUS do, some do not: the test can fail
    # the same line in a catalogue without --z: a different set, also by brute force
    other = science_query(Selection(), ArchiveClient(archive.url), spectral_requests([], ["CO(2-1)"]))
    assert set(other.mous) == _brute_force(root, 230.538, 230.538) != expected
    dest = tmp_path / "data"     # products and READMEs (the catalogue's raw tarballs are placeholders)
    assert main(["download", str(plan), "--dest", str(dest), "--what", "products,readme", "--keep-tars"]) == 0
    fetched = {f.name for f in dest.rglob("*") if f.is_file()}
    wanted = {f.name for f in view.files() if f.kind.value in ("products", "readme")}
    assert wanted and wanted <= fetched
    members = {p.name for p in dest.rglob("member.*") if p.is_dir()}
    assert members == {"member." + m.uid.replace("uid://", "uid___").replace("/", "_") for p in view.projects for m in p.mous}


def test_line_view_shows_spws_channel_width_resolution_and_sensitivity(archive, capsys):
    assert main(["query", "--line", "230.538GHz", "--vlsr", "-1200", "--archive", archive.url]) == 0
    out = capsys.readouterr().out
    assert "requested 230.538GHz vlsr=-1200km/s (radio): sky (LSRK) 231.460" in out
    head = next(line for line in out.splitlines() if line.startswith("MOUS  "))
    assert all(h in head for h in ('res"', 'LAS"', "sens mJy/b@10km/s", "spws covering", "chan km/s"))
    assert re.search(r"uid://\S+\s+6\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+230.538GHz vlsr=-1200km/s \(radio\): spw \d+\s+[\d.]+", out)


def test_limits_on_resolution_sensitivity_and_channel_width(archive, root):
    client = ArchiveClient(archive.url)
    req = spectral_requests(["224..232GHz"], [])
    every = science_query(Selection(), client, req)
    fine = science_query(Selection(), client, req, Limits(resolution=(0.0, 0.5)))
    assert set(fine.mous) == {u for u, m in every.mous.items() if m.spatial_resolution <= 0.5} and fine.mous
    upper = spectral_requests(["237..239GHz"], [])      # the wide (TDM-like) spws of the upper sideband
    wide = science_query(Selection(), client, upper)
    narrow = science_query(Selection(), client, upper, Limits(velocity_resolution=25.0))
    assert set(narrow.mous) == {u for u, m in wide.mous.items() if m.coverage[0].channel_kms <= 25.0}
    assert narrow.mous and set(narrow.mous) != set(wide.mous)
    deep = science_query(Selection(), client, req, Limits(sensitivity=1.35))
    assert set(deep.mous) == {u for u, m in every.mous.items() if m.coverage[0].sensitivity_10kms <= 1.35} != set(every.mous)
    assert main(["query", "--resolution", "0.5arcsec", "--archive", archive.url, "--view", "mous"]) == 0


def test_bad_science_options_are_usage_errors(archive, tmp_path, capsys):
    for args in (["--freq", "230"], ["--line", "FOO(1-0)"], ["--z", "0.1"], ["--line", "CO(2-1)", "--band", "3"],
                 ["--line", "CO(2-1)", "--plot", str(tmp_path / "x.gif")], ["--targets", str(tmp_path / "none.txt")]):
        assert main(["query", *args, "--archive", archive.url]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["query", "--freq", "40GHz", "--archive", archive.url]) == 1       # band 1: nothing there
    assert "no MOUS" in capsys.readouterr().err


# -- targets ------------------------------------------------------------------------------------
def test_targets_tag_each_mous_and_cost_a_handful_of_tap_queries(archive, root, tmp_path):
    import random

    rng = random.Random(20)
    near = [Target("src0", 266.4, -28.9, 1 / 3600), Target("offset-mosaic", 266.42, -28.885, 2 / 3600)]
    far = [Target(f"blank{i}", rng.uniform(0, 360), rng.uniform(-80, 20), 10 / 3600) for i in range(598)]
    targets = far[:300] + near + far[300:]
    client, calls = _counting_client(archive.url)
    result = science_query(Selection(), client, targets=targets)
    assert result.tap_calls == len(calls) == -(-len(targets) // BATCH) == 3
    # brute force: every MOUS whose rows' s_region reaches a target
    from almadeliver.sim.regions import Circle, parse_stcs
    expect: dict[str, set[str]] = {}
    for folder in find_projects(root):
        for row in Catalogue.load(folder).obscore:
            for t in targets:
                if parse_stcs(row["s_region"]).intersects(Circle(t.ra, t.dec, t.radius)):
                    expect.setdefault(row["member_ous_uid"], set()).add(t.name)
    assert {u: set(m.targets) for u, m in result.mous.items()} == expect
    # the offset position lies in the second polygon of the Union footprints only
    assert {u for u, m in result.mous.items() if "offset-mosaic" in m.targets} == \
        {u for u, m in result.mous.items() if m.regions[0].startswith("Union")} != set()
    path = tmp_path / "targets.csv"
    Table({"name": [t.name for t in targets], "ra": [t.ra for t in targets], "dec": [t.dec for t in targets]}).write(path)
    assert main(["query", "--targets", str(path), "--radius", "1arcsec", "--archive", archive.url,
                 "--format", "ecsv", "-o", str(tmp_path / "t.ecsv")]) == 0
    table = Table.read(tmp_path / "t.ecsv")
    assert {u: set(t.split(" | ")) for u, t in zip(table["member_ous_uid"], table["targets_covered"])} == \
        {u: {n for n in names if n == "src0" or n == "offset-mosaic"} for u, names in expect.items()}


# -- science tables: every format read back by astropy, names and units against the ObsCore list ----------
def _obscore_md(real: Path) -> dict[str, str]:
    cols = {}
    for line in (real / "archive" / "obscore_columns.md").read_text().splitlines():
        m = re.match(r"\| \d+ \| `([^`]+)` \| [^|]* \| ([^|]*) \|", line)
        if m:
            cols[m[1]] = m[2].strip()
    assert len(cols) == 71
    return cols


@pytest.mark.parametrize("view", ["mous", "rows"])
def test_every_format_reads_back_with_obscore_names_and_units(archive, real, tmp_path, view):
    md = _obscore_md(real)
    read = {}
    for fmt, reader in (("csv", "ascii.csv"), ("ecsv", "ascii.ecsv"), ("votable", "votable")):
        out = tmp_path / f"{view}.{fmt}"
        assert main(["query", "--line", "CO(2-1)", "--z", "0.0125", "--archive", archive.url, "--view", view,
                     "--format", fmt, "-o", str(out)]) == 0
        read[fmt] = Table.read(out, format=reader)
    names = read["ecsv"].colnames
    assert read["csv"].colnames == names == read["votable"].colnames
    assert set(names) <= set(md) | set(EXTRA), set(names) - set(md) - set(EXTRA)
    for fmt in ("ecsv", "votable"):
        t = read[fmt]
        for name in names:
            if name in md and name != "frequency_support" and md[name]:
                assert t[name].unit == u.Unit(md[name]), (fmt, name, t[name].unit)
        assert t["qa2_passed"].dtype == bool and t["s_ra"].dtype.kind == "f"
        assert t["spatial_resolution"].unit == u.arcsec and t["sensitivity_10kms"].unit == u.mJy / u.beam
    assert str(read["csv"]["qa2_passed"][0]) == "True"
    vot = read["votable"]
    assert vot["s_ra"].meta.get("ucd", "") == "pos.eq.ra" or "pos.eq.ra" in vot["s_ra"].info.meta.get("ucd", "pos.eq.ra")
    from astropy.io.votable import parse_single_table
    fields = {f.name: f for f in parse_single_table(tmp_path / f"{view}.votable").fields}
    assert fields["s_ra"].ucd == "pos.eq.ra" and fields["s_dec"].unit == u.deg
    if view == "mous":
        assert read["ecsv"]["line_channel_width"].unit == u.km / u.s and read["ecsv"]["line_frequency"].unit == u.GHz
        assert all(s.startswith("spw ") for s in read["ecsv"]["line_spws"])
    else:
        assert read["ecsv"]["spw_covers_line"].dtype == bool and read["ecsv"]["spw_covers_line"].any()
        assert not read["ecsv"]["spw_covers_line"].all()
    # the plan stays the plan
    plan = tmp_path / "plan.json"
    assert main(["query", "--line", "CO(2-1)", "--z", "0.0125", "--archive", archive.url, "--format", "json", "-o", str(plan)]) == 0
    assert json.loads(plan.read_text())["schema"] == "almadeliver.projectview/1"


def test_raw_view_table_has_units(archive, tmp_path):
    out = tmp_path / "raw.ecsv"
    assert main(["query", "--line", "CO(2-1)", "--archive", archive.url, "--view", "raw", "--format", "ecsv", "-o", str(out)]) == 0
    raw = Table.read(out)
    assert raw["raw_bytes"].unit == u.byte and raw["eb"].meta["ucd"] == "meta.id;meta.main" and len(raw) > 0


def test_pyvo_reads_the_votable(archive, tmp_path):
    from astropy.io.votable import parse
    from pyvo.dal import DALResults

    out = tmp_path / "m.xml"
    assert main(["query", "--freq", "84..300GHz", "--archive", archive.url, "--format", "votable", "-o", str(out)]) == 0
    results = DALResults(parse(out))
    assert len(results) == 9 and "member_ous_uid" in results.fieldnames
    assert results.getdesc("spatial_resolution").unit == "arcsec" and results.fieldname_with_ucd("pos.eq.ra") == "s_ra"


# -- pictures -----------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_plot_files_axes_and_legends(archive, tmp_path, suffix):
    client = ArchiveClient(archive.url)
    result = science_query(Selection(), client, spectral_requests(["224..232GHz"], ["CO(2-1)"], z=0.0125),
                           targets=[Target("src0", 266.4, -28.9, 1 / 3600)])
    fig = plot_answer(result, tmp_path / f"answer{suffix}")
    data = (tmp_path / f"answer{suffix}").read_bytes()
    assert len(data) > 5000 and data[:4] in (b"\x89PNG", b"<?xm", b"%PDF")
    sky, freq, res = fig.axes[:3]
    assert (sky.get_xlabel(), sky.get_ylabel()) == ("RA (ICRS) [deg]", "Dec (ICRS) [deg]")
    assert freq.get_xlabel() == "Sky frequency [GHz]" and res.get_ylabel() == "Spatial resolution [arcsec]"
    labels = [t.get_text() for t in freq.get_legend().get_texts()]
    assert "CO(2-1) z=0.0125" in labels and "224..232 GHz" in labels and "2019.1.00458.S" in labels
    assert "--targets" in [t.get_text() for t in sky.get_legend().get_texts()]
    assert any(t.get_text() == "band 6" for t in freq.texts) and res.get_legend() is not None
    if suffix == ".svg":
        assert "Sky frequency [GHz]" in data.decode() or "Sky frequency" in data.decode()


def test_plot_from_the_command_line(archive, tmp_path):
    out = tmp_path / "q.png"
    assert main(["query", "--line", "CO(2-1)", "--z", "0.0125", "--archive", archive.url, "--plot", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_a_name_without_a_resolver_is_matched_to_target_name(archive, tmp_path, monkeypatch):
    from almadeliver.archive import tap
    from almadeliver.errors import ArchiveUnreachable

    def offline(name, radius):
        raise ArchiveUnreachable(f"could not resolve the target '{name}': no name resolver answered")

    monkeypatch.setattr(tap, "resolve_target", offline)
    names = tmp_path / "names.txt"
    names.write_text("SRC1\n")
    out = tmp_path / "rows.ecsv"
    assert main(["query", "--targets", str(names), "--archive", archive.url, "--view", "rows", "--format", "ecsv",
                 "-o", str(out)]) == 0
    rows = Table.read(out)
    assert set(rows["target_name"]) == {"src1"} and set(rows["targets_covered"]) == {"SRC1"}
    assert len(set(rows["member_ous_uid"])) == 5                      # the 2019 project's MOUS observed src1


def test_alma_unit_slips_are_repaired_in_the_tables(tmp_path):
    """tiny_archive serves ALMA's recorded values: bandwidth 1875000000.0 under 'GHz', s_resolution
    0.3 (arcsec, = spatial_resolution) under 'deg' (obscore_columns.md, unit caveats)."""
    from tiny_archive import PUBLIC, build

    with LocalArchive(build(tmp_path / "tiny")) as tiny:
        out = tmp_path / "rows.votable"
        assert main(["query", PUBLIC, "--archive", tiny.url, "--view", "rows", "--format", "votable", "-o", str(out)]) == 0
    rows = Table.read(out, format="votable")
    assert rows["bandwidth"].unit == u.GHz and list(rows["bandwidth"]) == pytest.approx([1.875] * len(rows))
    assert rows["s_resolution"].unit == u.deg and list(rows["s_resolution"]) == pytest.approx([0.3 / 3600] * len(rows))
    assert rows["spatial_resolution"].unit == u.arcsec and list(rows["spatial_resolution"]) == pytest.approx([0.3] * len(rows))
    assert rows["is_mosaic"].dtype == bool and rows["science_observation"].all()
