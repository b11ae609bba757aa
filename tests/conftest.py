"""Shared test fixtures. The real ALMA files live in ../shared/fixtures/real/ (read, never copied)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Keep the tests' CASA site config and caches out of the user's home: set before almadeliver loads.
os.environ.setdefault("ALMADELIVER_HOME", tempfile.mkdtemp(prefix="almadeliver-test-home-"))

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("ALMADELIVER_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))


@pytest.fixture(scope="session")
def real() -> Path:
    """The folder of real ALMA files (archive answers, READMEs, pipeline files)."""
    if not REAL.is_dir():
        pytest.fail(f"real ALMA fixtures not found at {REAL} (set ALMADELIVER_REAL_FIXTURES)")
    return REAL
