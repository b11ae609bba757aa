"""The staff checklist items that read numbers: scripts, logs, flag versions, calibrated MSs, fluxes, images.

Each function adds one finding per item to the checker (staff.py's ``_Checker``): pass, warn or FAIL,
the path it looked at, and in ``numbers`` the figures behind the verdict. Where each rule comes from:

- seed 001 (ALMA staff manual, manual data reduction): step 0 removes ``<EB>.ms.flagversions``
  before importasdm; check the CASA log for errors and warnings; setjy fluxes sensible; flagging
  rate per stage (getFlagStatistics); corrected amplitude and phase flat on the calibrators in
  ``<EB>.ms.split.cal``; ``.ms.split.cal`` and ``.ms.split.fluxscale`` copied into
  ``Combination/calibrated``; allFluxes.txt right against the ``.fluxscale`` files; EBs days apart
  (do not scale fluxes); fields and spws of ``calibrated.ms`` after concat (dirtol, Doppler
  setting); the same CASA version for calibration and imaging; sensitivity and resolution against
  the request; a qa2 directory per EB.
- seed 002 (ALMA QA2 Data Products): per EB three ``qa2_part`` PNGs and a textfile; per spw one
  cube, per sideband one continuum image; images conform to FITS; masks shipped as CASA images
  when the script cannot give them analytically.

The package, by concern: ``thresholds`` (the checker protocol and the warn/FAIL thresholds),
``scripts`` (figures read from the calibration scripts), ``logs`` (the CASA logs), ``eb`` (each EB
folder), ``combination`` (Combination/) and ``imaging`` (Imaging/). Every name below is importable
from ``almadeliver.delivery.checklist`` as before the split.
"""
from __future__ import annotations

from .thresholds import (FLAG_WARN, FLAG_FAIL, PHASE_WARN_DEG, PHASE_FAIL_DEG, AMP_WARN, AMP_FAIL, SETJY_WARN,
                         SETJY_FAIL, ALLFLUXES_FAIL, SEPARATION_WARN_DAYS, RMS_WARN, BEAM_WARN)
from .scripts import flagversions_removal, setjy_fluxes
from .logs import KNOWN_WARNINGS, log_warnings, log_casa_version, check_log_warnings, check_casa_versions
from .eb import check_qa2, split_cal, check_split_cal, check_flagging, check_calibrators, read_flux_csv, check_setjy
from .combination import (read_fluxscale, read_allfluxes, check_fluxscale_copies, check_allfluxes, check_separation,
                          check_concat)
from .imaging import (ImageFigures, image_figures, imaged_ms, check_products, check_fits_verify, readme_request,
                      check_request, imaging_masks, check_masks)

__all__ = [
    'FLAG_WARN', 'FLAG_FAIL', 'PHASE_WARN_DEG', 'PHASE_FAIL_DEG', 'AMP_WARN', 'AMP_FAIL', 'SETJY_WARN',
    'SETJY_FAIL', 'ALLFLUXES_FAIL', 'SEPARATION_WARN_DAYS', 'RMS_WARN', 'BEAM_WARN', 'flagversions_removal',
    'setjy_fluxes', 'KNOWN_WARNINGS', 'log_warnings', 'log_casa_version', 'check_log_warnings',
    'check_casa_versions', 'check_qa2', 'split_cal', 'check_split_cal', 'check_flagging', 'check_calibrators',
    'read_flux_csv', 'check_setjy', 'read_fluxscale', 'read_allfluxes', 'check_fluxscale_copies',
    'check_allfluxes', 'check_separation', 'check_concat', 'ImageFigures', 'image_figures', 'imaged_ms',
    'check_products', 'check_fits_verify', 'readme_request', 'check_request', 'imaging_masks', 'check_masks',
]
