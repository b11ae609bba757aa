"""A quick proof that the CASA runtime works offline (run in a CASA child by casa-info --check)."""
from __future__ import annotations


def measures_check_in_casa() -> dict:
    """Convert a J2000 direction to AZEL at the ALMA site and UTC to TAI; needs the measures data.

    Returns
    -------
    dict
        ``casa_version``, ``az_deg``, ``el_deg`` (degrees) and ``tai_minus_utc_s`` (s).
    """
    from casatools import measures, quanta, version_string

    me, qa = measures(), quanta()
    me.doframe(me.observatory("ALMA"))
    me.doframe(me.epoch("utc", "2020/01/01/00:00:00"))
    azel = me.measure(me.direction("J2000", "05h35m17.3s", "-05d23m28s"), "AZEL")
    tai = me.measure(me.epoch("utc", "2020/01/01/00:00:00"), "tai")
    return {
        "casa_version": version_string(),
        "az_deg": qa.convert(azel["m0"], "deg")["value"],
        "el_deg": qa.convert(azel["m1"], "deg")["value"],
        "tai_minus_utc_s": (tai["m0"]["value"] - 58849.0) * 86400.0,
    }
