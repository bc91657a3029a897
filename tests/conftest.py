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

# Under pytest-xdist (`make test` runs two workers), each worker gets its share of the cores:
# OpenMP libraries (torch, CTranslate2, BLAS) otherwise start one spinning thread per core in
# every worker, and two workers' threads fighting over 2 cores made a 16 s torch test take 96 s.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_variable, _share)

#: Test files that take the longest, longest first (seconds per file under `make test` on 2
#: cores, 2026-11-30: 197 151 134 103 84 47 46 43 39 35 31 25), started first so that the two
#: workers do not end with one of them alone on a long file.
_LONGEST_FILES = ("test_models_torch_learning.py", "test_models_torch.py", "test_models_svm.py",
                  "test_features_whisper.py", "test_service.py", "test_features_ssl.py",
                  "test_service_batching.py", "test_experiment.py", "test_cold_start.py", "test_inference.py",
                  "test_datasets.py", "test_extract.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (a stable sort: each file keeps its own test order)."""
    rank = {name: position for position, name in enumerate(_LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
