"""The ALMA ivoa.obscore columns (../shared/fixtures/real/archive/obscore_columns.md).

One row per (MOUS x source x spectral window), one EB per row. Both the local archive (which
serves them) and the query stage (which reads them) take the column list from here."""
from __future__ import annotations

from typing import NamedTuple


class Column(NamedTuple):
    """One ObsCore column as the ALMA TAP service declares it (name, VOTable datatype, unit, UCD, ...)."""
    name: str
    datatype: str  # char | int | double
    unit: str
    ucd: str
    description: str


OBSCORE_COLUMNS: tuple[Column, ...] = (
    Column('obs_publisher_did', 'char', '', 'meta.ref.ivoid', 'publisher dataset identifier'),
    Column('obs_collection', 'char', '', '', 'short name for the data collection'),
    Column('facility_name', 'char', '', '', 'telescope name'),
    Column('instrument_name', 'char', '', '', 'instrument name'),
    Column('obs_id', 'char', '', '', 'internal dataset identifier'),
    Column('dataproduct_type', 'char', '', '', 'type of product'),
    Column('calib_level', 'int', '', '', 'calibration level (2 or 3). 2 if product_type = MOUS, 3 if product_type = GOUS'),
    Column('target_name', 'char', '', '', 'name of intended target'),
    Column('s_ra', 'double', 'deg', 'pos.eq.ra', 'RA of central coordinates'),
    Column('s_dec', 'double', 'deg', 'pos.eq.dec', 'DEC of central coordinates'),
    Column('s_fov', 'double', 'deg', '', 'size of the region covered (~diameter of minimum bounding circle)'),
    Column('s_region', 'char', 'deg', 'pos.outline;obs.field', 'region bounded by observation'),
    Column('s_resolution', 'double', 'deg', '', 'typical spatial resolution'),
    Column('t_min', 'double', 'd', '', 'start time of observation (MJD)'),
    Column('t_max', 'double', 'd', '', 'end time of observation (MJD)'),
    Column('t_exptime', 'double', 's', '', 'exposure time of observation'),
    Column('t_resolution', 'double', 's', '', 'typical temporal resolution'),
    Column('em_min', 'double', 'm', '', 'start spectral coordinate value'),
    Column('em_max', 'double', 'm', '', 'stop spectral coordinate value'),
    Column('em_res_power', 'double', '', '', 'typical spectral resolution'),
    Column('pol_states', 'char', '', '', 'polarization states present in the data'),
    Column('o_ucd', 'char', '', '', 'UCD describing the observable axis (pixel values)'),
    Column('access_url', 'char', '', '', 'URL to download the data'),
    Column('access_format', 'char', '', '', 'Content format of the data'),
    Column('proposal_id', 'char', '', '', 'Identifier of proposal to which NO observation belongs.'),
    Column('data_rights', 'char', '', '', 'Access to data.'),
    Column('gal_longitude', 'double', 'deg', '', 'Galactic longitude of the observation for RA/Dec. Estimated using PyEphem and RA/Dec.'),
    Column('gal_latitude', 'double', 'deg', '', 'Galactic latitude of the observation for RA/Dec. Estimated using PyEphem and RA/Dec.'),
    Column('band_list', 'char', '', '', 'Space delimited list of bands'),
    Column('em_resolution', 'double', 'm', '', 'Estimated frequency resolution from all the spectral windows, using median values of channel widths.'),
    Column('bandwidth', 'double', 'GHz', '', 'Total Bandwidth'),
    Column('antenna_arrays', 'char', '', '', 'Blank-separated list of Pad:Antenna pairs, i.e., A109:DV09 J504:DV02 J505:DV05 for antennas DV09, DV02 and DV05 sitting on pads A109, J504, and J505, respectively.'),
    Column('is_mosaic', 'char', '', '', 'Flag to indicate if this ASDM represents a mosaic or not.'),
    Column('obs_release_date', 'char', '', '', 'timestamp of date the data becomes publicly available'),
    Column('spatial_resolution', 'double', 'arcsec', '', 'Average of the maximum and minimum spatial resolution values of all spectral windows'),
    Column('frequency_support', 'char', 'GHz', '', 'All frequency ranges used by the field'),
    Column('frequency', 'double', 'GHz', 'em.freq;obs;meta.main', 'Observed (tuned) reference frequency on the sky.'),
    Column('velocity_resolution', 'double', 'm/s', '', 'Estimated velocity resolution from all the spectral windows, from frequency resolution.'),
    Column('obs_creator_name', 'char', '', '', 'case-insensitive partial match over the full PI name. Wildcards can be used'),
    Column('pub_title', 'char', '', '', 'Case insensitive search through the title of the publication.'),
    Column('first_author', 'char', '', '', 'The first author as provided by telbib.eso.org.'),
    Column('authors', 'char', '', '', 'Full list of first author and all co-authors'),
    Column('pub_abstract', 'char', '', '', 'Case insensitive text search through the abstract of the publication.'),
    Column('publication_year', 'int', '', '', 'The year the publication did appear in the printed version of the refereed journal.'),
    Column('proposal_abstract', 'char', '', '', 'Text search on the proposal abstract. Only abstracts will be returned which contain the given text. The search is case-insensitive.'),
    Column('schedblock_name', 'char', '', '', 'Name of the Scheduling Block used as a template for executing the ASDM containing this Field.'),
    Column('proposal_authors', 'char', '', '', 'Full name of CoIs .'),
    Column('sensitivity_10kms', 'double', 'mJy/beam', '', 'Estimated noise in an nominal 10km/s bandwidth. Note this is an indication only, it does not include the effects of flagging or Hanning smoothing, and a 10km/s bandwidth may not be achievable with the data as taken.'),
    Column('cont_sensitivity_bandwidth', 'double', 'mJy/beam', '', 'Estimated noise in the aggregated continuum bandwidth. Note this is an indication only, it does not include the effects of flagging or dynamic range limitations.'),
    Column('pwv', 'double', 'mm', '', 'Estimated precipitable water vapour from the XML_CALWVR_ENTITIES table.'),
    Column('group_ous_uid', 'char', '', '', 'Group OUS ID'),
    Column('member_ous_uid', 'char', '', '', 'Member OUS ID'),
    Column('asdm_uid', 'char', '', '', 'UID of the ASDM containing this Field.'),
    Column('obs_title', 'char', '', '', 'Case-insensitive search over the project title'),
    Column('type', 'char', '', '', 'Type flags.'),
    Column('scan_intent', 'char', '', '', 'Scan intent list for the observed field.'),
    Column('science_observation', 'char', '', '', 'Flag to indicate whether this is a science observation.'),
    Column('spatial_scale_max', 'double', 'arcsec', '', 'Due to the fact that radio antennas can not be placed infinitely close, measurements do have a smallest separation which translates into a maximal angular distance beyond which features can not be resolved reliably any more. Adding observations with the ALMA Total Power array can add those missing largest scales.'),
    Column('qa2_passed', 'char', '', '', "Quality Assessment 2 status: does the Member / Group OUS fulfil the PI's requirements?"),
    Column('bib_reference', 'char', '', '', 'Bibliography code'),
    Column('science_keyword', 'char', '', '', 'None'),
    Column('scientific_category', 'char', '', '', 'None'),
    Column('spectral_resolution', 'double', '', '', ''),
    Column('lastModified', 'char', '', '', 'Time stamp of last modification of the metadata'),
    Column('pi_name', 'char', '', '', ''),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in OBSCORE_COLUMNS)
