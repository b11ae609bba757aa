import pytest

from almadeliver.delivery.calapply import parse_calapply
from almadeliver.delivery.commandslog import product_tclean_calls
from almadeliver.delivery.calls import iter_calls
from almadeliver.errors import ParseError

CALAPPLY = """\
applycal(vis='uid___A002_X1_X2.ms', field='', intent='PHASE,TARGET', spw='0,1', antenna='0~5', gaintable=['uid___A002_X1_X2.ms.hifa_bandpass.s8_3.bp.tbl', 'uid___A002_X1_X2.ms.hifa_timegaincal.s12.phase.tbl'], gainfield=['', 'J1751+0939'], spwmap=[[], []], interp=['linear,linear', 'linear'], calwt=[False, False], parang=False, applymode='calflagstrict')
applycal(vis='uid___A002_X1_X2.ms', field='', intent='BANDPASS', spw='0,1', antenna='0~5', gaintable='bp.tbl', gainfield='', interp='linear', calwt=False)
"""


def test_calapply_lines_parse_and_map_intents():
    calls = parse_calapply(CALAPPLY)
    assert [c.line for c in calls] == [1, 2]
    assert calls[0].gainfield == ["", "J1751+0939"] and calls[0].other == {"parang": False, "applymode": "calflagstrict"}
    assert calls[0].ms_intents() == "CALIBRATE_PHASE#ON_SOURCE,OBSERVE_TARGET#ON_SOURCE"
    assert calls[1].gaintable == ["bp.tbl"] and calls[1].calwt == [False]


@pytest.mark.parametrize("bad,msg", [
    ("applycal(vis='a.ms', gaintable=[os.system('rm -rf /')])", "not a literal"),
    ("applycal(vis='a.ms', gaintable=['t'", "not a valid call"),
    ("gaincal(vis='a.ms', gaintable=['t'])", "expected applycal"),
    ("applycal('a.ms', gaintable=['t'])", "keyword arguments only"),
    ("applycal(vis='a.ms')", "without vis= or gaintable="),
])
def test_malformed_calapply_line_is_rejected_with_its_number(bad, msg):
    with pytest.raises(ParseError, match=rf"calapply.txt:3: .*{msg}"):
        parse_calapply(CALAPPLY + bad + "\n")


def test_unknown_pipeline_intent():
    (call,) = parse_calapply("applycal(vis='a.ms', intent='NOPE', gaintable=['t'])")
    with pytest.raises(ParseError, match="unknown pipeline intent 'NOPE'"):
        call.ms_intents()


LOG = """\
# hif_makeimages(hm_masking='auto')
tclean(vis=['uid___A002_X1_X2_targets.ms'], field='src', spw=['0'], intent='OBSERVE_TARGET#ON_SOURCE',
       imagename='uid___A001_X1_X3.s36_0.src_sci.spw0.cube.I.iter0', specmode='cube', niter=0)
tclean(vis=['uid___A002_X1_X2_targets.ms'], field='src', spw=['0'], intent='OBSERVE_TARGET#ON_SOURCE',
       imagename='uid___A001_X1_X3.s36_0.src_sci.spw0.cube.I.iter1', specmode='cube', niter=100,
       threshold='0.01Jy')  # a comment with ) in it
exportfits(imagename='x.image', fitsimage='x.fits')
tclean(vis=['uid___A002_X1_X2_targets.ms'], field='src', spw=['0', '1'],
       imagename='uid___A001_X1_X3.s38_0.src_sci.spw0_1.cont.I.iter1', specmode='mfs', niter=50)
"""


def test_commands_log_multiline_calls_and_product_selection():
    calls = list(iter_calls(LOG, "casa_commands.log"))
    assert [c.task for c in calls] == ["tclean", "tclean", "exportfits", "tclean"]
    assert [c.line for c in calls] == [2, 4, 7, 8]
    products = product_tclean_calls(calls)
    assert [c.kwargs["specmode"] for c in products] == ["cube", "mfs"]
    assert products[0].kwargs["threshold"] == "0.01Jy"
    assert "intent='OBSERVE_TARGET#ON_SOURCE'" in products[0].render()


def test_unclosed_call_is_reported():
    with pytest.raises(ParseError, match="log:1: call not closed"):
        list(iter_calls("tclean(vis='a',\n", "log"))
