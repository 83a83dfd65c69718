"""One exception type for mistakes a user can fix, and the wrapper that prints it.

Lab students meet a 40-line TensorFlow traceback for a mistyped folder name and
give up; every command therefore turns a ``UserError`` into one line on stderr
and exit status 2, and keeps real tracebacks for real bugs.
"""
from __future__ import annotations

import functools
import sys
import warnings


class UserError(Exception):
    """Bad input the user can fix: a missing folder, a wrong weights path, ..."""


def main_guard(function):
    """Run a command's ``main``; print a ``UserError`` as one line and exit 2."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        default_format = warnings.formatwarning
        warnings.formatwarning = _plain_warnings(default_format)
        try:
            result = function(*args, **kwargs)
        except UserError as error:
            _discard_unfinished_runs()
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            kept = _discard_unfinished_runs()
            where = "".join(f"; {folder} keeps what the run wrote (rerun with another --output-dir)"
                            for folder in kept)
            print(f"interrupted: finished cache shards are kept; rerun to resume{where}.", file=sys.stderr)
            raise SystemExit(130) from None
        except BaseException:
            _discard_unfinished_runs()
            raise
        finally:
            warnings.formatwarning = default_format
        _discard_unfinished_runs(finished=True)
        return result

    return wrapper


def _plain_warnings(default_format):
    """Warnings meant for the user (their category has ``plain = True``, e.g. skipped images) as
    ``warning: ...`` lines, without the file name, line number and source line of the code that raised them."""

    def format_warning(message, category, filename, lineno, line=None):
        if getattr(category, "plain", False):
            return f"warning: {message}\n"
        return default_format(message, category, filename, lineno, line)

    return format_warning


def _discard_unfinished_runs(finished: bool = False) -> list:
    """``common.training.discard_unfinished_runs`` if a run folder can have been opened (training imported);
    after a command that finished, only forget its folders (a later command in the same process must not
    touch them)."""
    training = sys.modules.get("common.training")
    if training is None:
        return []
    if finished:
        training.forget_opened_runs()
        return []
    return training.discard_unfinished_runs()
