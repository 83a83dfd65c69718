"""The labs' quick setting for the test run: every notebook in labs/ runs on tiny data.

nbmake starts one kernel per notebook and the kernel inherits this process's
environment, so setting ``LABS_QUICK`` here, while pytest collects labs/,
reaches every notebook's parameters cell. ``LABS_QUICK=0 python -m pytest
labs`` runs the real lessons instead (long: see labs/README.md).
"""
import os

os.environ.setdefault("LABS_QUICK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
