"""One exception type for mistakes a user can fix, and the wrapper that prints it.

Lab students meet a 40-line TensorFlow traceback for a mistyped folder name and
give up; every command therefore turns a ``UserError`` into one line on stderr
and exit status 2, and keeps real tracebacks for real bugs.
"""
from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """Bad input the user can fix: a missing folder, a wrong weights path, ..."""


def main_guard(function):
    """Run a command's ``main``; print a ``UserError`` as one line and exit 2."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted: finished cache shards are kept; rerun to resume.", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
