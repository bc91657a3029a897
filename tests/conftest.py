"""Shared fixtures: the real corpora folder (tests skip when absent) and tiny audio writers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Real emotional speech beside the checkout (never copied into the repository).
SHARED_DATA = Path(os.environ.get("SERKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`; tests using it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real corpora not found at {SHARED_DATA}")
    return SHARED_DATA


# "auto" precision is measured per machine (serkit.precision); pin it to float32 for the suite
# so results do not depend on the CI processor, and keep its cache out of the user's home.
# Tests of the choice itself fake the processor and clear the override.
os.environ["SERKIT_PRECISION"] = "float32"
os.environ.setdefault("SERKIT_PRECISION_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"serkit-precision-{os.getpid()}.json"))
