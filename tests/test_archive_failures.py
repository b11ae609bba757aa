"""The query stage when the archive's services fail: DataLink answering 401/403/404/5xx, and a TAP answer the
service truncated (QUERY_STATUS OVERFLOW). Against the local archive's fault flags, through the command."""
from __future__ import annotations

import pytest

from almadeliver.archive.client import ArchiveClient
from almadeliver.archive.projectview import query
from almadeliver.archive.tap import Selection
from almadeliver.cli import main
from almadeliver.errors import ArchiveUnreachable, AuthError, NotFoundError, QueryError
from almadeliver.sim.archive import Faults, LocalArchive
from tiny_archive import PUBLIC, tiny_root  # noqa: F401


@pytest.fixture
def failing(tiny_root):  # noqa: F811
    with LocalArchive(tiny_root) as running:
        yield running


def _one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("status, error, words", [
    (401, AuthError, "refused DataLink"),
    (403, AuthError, "refused DataLink"),
    (404, NotFoundError, "does not know"),
])
def test_datalink_refusals_are_one_line_and_not_retried(failing, capsys, status, error, words):
    failing.faults = Faults(datalink_status=status)
    with pytest.raises(error, match=words) as err:
        query(Selection(projects=[PUBLIC]), ArchiveClient(failing.url, retries=2, backoff=0.01))
    assert f"HTTP {status}" in str(err.value)
    failing.stats.reset()
    assert main(["query", PUBLIC, "--archive", failing.url]) == 1
    line = _one_line(capsys)
    assert line.startswith("error: ") and words in line and f"HTTP {status}" in line
    assert failing.stats.requests <= 4, "a refusal is not asked again"   # TAP, then one DataLink per MOUS at most


@pytest.mark.parametrize("status", [500, 502, 503])
def test_datalink_5xx_is_retried_then_the_mirror_did_not_answer(failing, capsys, status):
    failing.faults = Faults(datalink_status=status)
    failing.stats.reset()
    with pytest.raises(ArchiveUnreachable, match=f"HTTP {status}"):
        query(Selection(projects=[PUBLIC]), ArchiveClient(failing.url, retries=2, backoff=0.01))
    assert failing.stats.requests >= 1 + 3, "the DataLink call was asked three times"
    failing.faults = Faults()                     # the service recovers: the same query works
    view = query(Selection(projects=[PUBLIC]), ArchiveClient(failing.url, retries=2, backoff=0.01))
    assert sorted(m.uid for p in view.projects for m in p.mous) == ["uid://A001/X12a3/Xe9", "uid://A001/X12a3/Xeb"]


def test_an_obscore_answer_cut_at_the_services_limit_is_an_error_not_a_short_list(failing, capsys):
    failing.faults = Faults(tap_limit=3)          # the project has 12 ObsCore rows
    with pytest.raises(QueryError, match="truncated the answer at 3 rows"):
        query(Selection(projects=[PUBLIC]), ArchiveClient(failing.url, retries=0))
    assert main(["query", PUBLIC, "--archive", failing.url]) == 1
    line = _one_line(capsys)
    assert "truncated the answer at 3 rows" in line and "narrow the selection" in line
    failing.faults = Faults(tap_limit=500)        # under the limit: the whole answer
    view = query(Selection(projects=[PUBLIC]), ArchiveClient(failing.url, retries=0))
    assert len([m for p in view.projects for m in p.mous]) == 2
