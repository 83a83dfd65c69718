"""TensorFlow's start-up messages, hidden unless ``--verbose``: the first import of every command.

A newcomer's first screen was TensorFlow's, not the lesson's: on TensorFlow
2.21 every command began with the oneDNN and CUDA banners twice and
``E0000 ... failed call to cuInit`` on a machine without a GPU. Setting
``TF_CPP_MIN_LOG_LEVEL`` is not enough (measured with ``python -m
cats_dogs.bottleneck --help``): ``2`` hides the later warnings, ``3`` also the
cuInit line, but neither reaches the banners, which two of TensorFlow's
shared libraries log while they load, before absl's logging is initialised
(hence "All log messages before absl::InitializeLog() is called are written
to STDERR"). So, unless the command line says ``--verbose``, this module

- sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless the environment already sets it):
  TensorFlow's C++ INFO and WARNING lines off, its errors still shown;
- when TensorFlow is first imported (by whatever imports it: keras, a lesson,
  nothing at all in a command that does not need it), runs that import and
  the listing of its GPUs (where CUDA is initialised, and cuInit fails
  without one) with the process's stderr (file descriptor 2, which the C++
  code writes to) pointed at a temporary file, then writes back every
  captured line except those log lines: TensorFlow's INFO and WARNING lines,
  absl's notice, and the errors of a CUDA that is absent. Anything else (a
  Python warning, a real error) still reaches the screen, and if the import
  fails everything captured is shown.

``--verbose`` (every command has it, ``common.cli.make_parser``) is read from
``sys.argv`` here, because the choice must be made before TensorFlow is
imported, which is before the command's arguments are parsed. With it
nothing is changed: TensorFlow logs as it would on its own. The devices
TensorFlow will use are the same either way.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

VERBOSE = "--verbose" in sys.argv[1:]

#: absl / TensorFlow C++ log lines: severity letter and date, time (seconds since 1970 before absl is initialised),
#: thread, file:line]
_LOG_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] (?P<text>.*)$")
#: the error lines of a machine without a usable CUDA driver, and of libraries registered twice at load
_CUDA_ABSENT = re.compile(r"cuInit|cuda drivers|CUDA error|Unable to register (cuDNN|cuFFT|cuBLAS) factory", re.I)
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def is_start_up_noise(line: str) -> bool:
    """Whether a captured stderr line is one of the start-up messages hidden by default."""
    if line.strip() == _ABSL_NOTICE:
        return True
    match = _LOG_LINE.match(line.strip())
    if match is None:
        return False
    return match["severity"] in "IW" or (match["severity"] == "E" and bool(_CUDA_ABSENT.search(match["text"])))


@contextlib.contextmanager
def stderr_without_start_up_noise():
    """File descriptor 2 into a temporary file for the block; then every captured line that is not noise is
    written back (everything, if the block raised)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = lines if failed else [line for line in lines if not is_start_up_noise(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run inside ``stderr_without_start_up_noise``, then its GPUs listed there too."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with stderr_without_start_up_noise():
            self._loader.exec_module(module)
            module.config.list_physical_devices("GPU")   # CUDA's initialisation, and its cuInit line, happen here

    def __getattr__(self, name):   # what else the import system or pkgutil ask a loader
        return getattr(self._loader, name)


class _QuietFirstImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the first ``import tensorflow`` it hands back TensorFlow's real spec with the
    quiet loader, and leaves ``sys.meta_path``. A command that never loads TensorFlow pays nothing."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_start_up() -> None:
    """``TF_CPP_MIN_LOG_LEVEL=2`` unless set, and the first import of TensorFlow without its banners."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFirstImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFirstImport())


def add_verbose_argument(parser) -> None:
    """``--verbose`` on a command's parser (``common.cli.make_parser`` adds it to every lesson's); this module has
    read it from ``sys.argv`` already."""
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up messages (oneDNN, CUDA), hidden by default (common.startup)")


if not VERBOSE:
    quiet_tensorflow_start_up()
