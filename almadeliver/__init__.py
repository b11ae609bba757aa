"""almadeliver: query, download, validate, restore, image and package ALMA deliveries."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("almadeliver")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

# The offline CASA site config must be in force before anything imports casatools.
from .casa.runtime import configure_offline as _configure_offline  # noqa: E402

_configure_offline()
