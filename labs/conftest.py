"""The labs' quick setting for the test run: every notebook in labs/ runs on tiny data.

nbmake starts one kernel per notebook and the kernel inherits this process's
environment, so setting ``LABS_QUICK`` here, while pytest collects labs/,
reaches every notebook's parameters cell. ``LABS_QUICK=0 python -m pytest
labs`` runs the real lessons instead (long: see labs/README.md).

The notebooks read the real data sets (``../shared/data`` beside the
repository, or ``$LABS_SHARED/data``); where they are missing the notebooks
are skipped, as the tests that need them are.
"""
import os
from pathlib import Path

import pytest

os.environ.setdefault("LABS_QUICK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(os.environ.get("LABS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def pytest_collection_modifyitems(config, items):
    if (SHARED / "data").is_dir():
        return
    skip = pytest.mark.skip(reason=f"the labs need the shared data sets in {SHARED / 'data'} (set LABS_SHARED)")
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(skip)
