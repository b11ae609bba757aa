"""Re-imaging a restored delivery: the delivered tclean calls, the user's overrides, CASA per image.

Pipeline deliveries: the product tclean calls come from ``log/<MOUS>.casa_commands.log`` (literal
parser, never eval); each becomes an ``ImagingJob`` (the call with vis pointed at the restored MSs
and the overrides applied, plus ALMA's product names for the exported FITS). Manual deliveries:
``script/scriptForImaging.py`` runs through the legacy shim with ``tclean`` wrapped so that every
call it makes gets the same overrides (see ``run_script_images``); a clean-era script (Cycles 0-3:
Python 2, ``clean()``) is converted and its clean calls run as tclean (``imaging_legacy``).

The pipeline re-imaging guide's options (seed 003): ``--cont all`` (continuum from every unflagged
channel), a user's ``calibrated/working/cont.dat`` (continuum images and --contsub follow it), per-spw
``--nbin``, science-target flag templates applied to a copy before imaging; ``--moments`` adds
immoments maps of the cubes. Each run writes OUT/README with the new beams and rms.

Everything up to ``plan_images`` needs no CASA; spw and field are checked against what the delivery
imaged before any CASA process starts.

The package, by concern: ``overrides`` (the options and how they change a tclean call),
``restored`` (the restored MSs and their spw ids), ``delivered`` (what the member folder holds),
``jobs`` (a job per delivered product tclean call), ``prepare`` (target flags, uvcontsub, cont.dat
ranges, moments attached to the jobs), ``plan`` (the plan, no CASA), ``script`` (scriptForImaging.py),
``run`` (making the images), ``compare`` (new against delivered, the record, OUT/README) and
``child`` (what runs in CASA). The names below are the public API: ``from almadeliver.casa import
imaging; imaging.plan(...)``.
"""
from __future__ import annotations

from ..imaging_legacy import Expression
from .overrides import (apply_overrides, line_free_ranges, MOMENTS, Overrides, parse_per_spw, PER_SPW, rebin,
                        spectral_axis, spectral_range, spw_ids)
from .linefree import find_line_free, FoundLineFree
from .restored import (calibrated_column, remap_spw, restore_spw_record, Restored, restored_mss, rewrite_vis,
                       split_spw_map, spw_rows_in_casa)
from .delivered import (commands_log, contdat_file, contdat_ranges, delivered_product, imaging_script, member_source,
                        target_flag_templates, user_contdat)
from .jobs import continuum_subtracted, export_names, image_kind, ImagingJob, jobs_from_calls, product_name
from .plan import ImagingPlan, list_images, plan, plan_images
from .script import script_in_casa, script_clean_translations, script_tclean_calls
from .run import new_out_folder, run, run_images, run_script_images
from .compare import (compare, Comparison, COMPARISON_COLUMNS, comparison_rows, image_stats, ImageStats,
                      ImagingResult, max_difference, quicklook_png, updated_readme, write_record)
from .child import (channel_frequencies, cont_selection, contsub_in_casa, flagtargets_in_casa, moment_maps,
                    tclean_in_casa)

__all__ = [
    'Expression', 'apply_overrides', 'line_free_ranges', 'MOMENTS', 'Overrides', 'parse_per_spw', 'PER_SPW',
    'rebin', 'spectral_axis', 'spectral_range', 'spw_ids', 'find_line_free', 'FoundLineFree', 'calibrated_column', 'remap_spw',
    'restore_spw_record', 'Restored', 'restored_mss', 'rewrite_vis', 'split_spw_map', 'spw_rows_in_casa',
    'commands_log', 'contdat_file', 'contdat_ranges', 'delivered_product', 'imaging_script', 'member_source',
    'target_flag_templates', 'user_contdat', 'continuum_subtracted', 'export_names', 'image_kind', 'ImagingJob',
    'jobs_from_calls', 'product_name', 'ImagingPlan', 'list_images', 'plan', 'plan_images', 'script_in_casa',
    'script_clean_translations', 'script_tclean_calls', 'new_out_folder', 'run', 'run_images', 'run_script_images',
    'compare', 'Comparison', 'COMPARISON_COLUMNS', 'comparison_rows', 'image_stats', 'ImageStats', 'ImagingResult',
    'max_difference', 'quicklook_png', 'updated_readme', 'write_record', 'channel_frequencies', 'cont_selection', 'contsub_in_casa',
    'flagtargets_in_casa', 'moment_maps', 'tclean_in_casa',
]
