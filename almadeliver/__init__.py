"""almadeliver: query, download, validate, restore, image and package ALMA deliveries.

The verbs of the command line are the API (``almadeliver.api``), each returning the dataclass the
command prints::

    import almadeliver as ad
    view = ad.query("2017.1.00123.S")        # ProjectView; view.to_table() is the science table
    result = ad.download(view, "data")       # TransferResult
    report = ad.validate("data/2017.1.00123.S")

Importing the package is light: the verbs load their stages when first called, no CASA is imported
until a CASA step runs, and no environment variable is set or changed (the offline CASA site config
is written, and ``CASASITECONFIG`` set when the user has not set it, at the moment CASA runs:
``almadeliver.casa.runtime``).
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("almadeliver")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = ["query", "download", "validate", "restore", "image", "package", "run", "__version__"]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str):
    """The API verbs, imported on first use (``import almadeliver`` stays light)."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'almadeliver' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
