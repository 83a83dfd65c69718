"""The lab notebooks (a package only so that labs/conftest.py does not clash with tests/conftest.py)."""
