"""Downloading data sets and weights, and laying them out without ever touching the user's copy.

Real users have a network, so the official URL through ``keras.utils.get_file``
stays the default path; these machines (and many lab rooms) do not, so every
download failure says which file is missing, where Keras looks for it, and how
to point the command at a local copy instead (``offline_error``: the one text
every command prints). Preparing a layout copies or links files; it never
moves, renames or deletes anything in the source.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from common.errors import UserError


def keras_home() -> Path:
    """Keras's cache folder: ``$KERAS_HOME``, else ``~/.keras``; ``/tmp/.keras`` where that is not writable.

    The same rule as ``keras.utils.get_file``, so an offline error names the
    folder Keras will really look in (``datasets/`` for data, ``models/`` for
    weights).
    """
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    if not os.access(home if home.exists() else home.parent, os.W_OK):
        home = Path("/tmp/.keras")
    return home


def offline_error(file_name: str, error: Exception, folder: Path, alternative: str) -> UserError:
    """The one message for a download that failed: which file, where to put it, what else to pass."""
    return UserError(
        f"could not download {file_name} ({first_line(error)}). "
        f"Without a network, put {file_name} in {folder}/ and rerun, or {alternative}"
    )


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def fetch(local, *, url: str, file_name: str, alternative: str) -> Path:
    """The user's local copy when one is given, else the official download (Keras's cache).

    ``local`` is a path or None; ``alternative`` ends the offline error and
    names the flag that takes a local copy (``pass --from DIR``). Returns the
    local path, or where the archive was extracted.
    """
    if local is not None:
        path = Path(local).expanduser()
        if not path.exists():
            raise UserError(f"{path} does not exist; {alternative}")
        return path
    import keras

    try:
        return Path(keras.utils.get_file(file_name, origin=url, extract=True))
    except Exception as error:  # get_file raises a bare Exception on URL failures
        raise offline_error(file_name, error, keras_home() / "datasets", alternative) from None


def writable_folder(folder, flag: str) -> Path:
    """``folder``, made if missing, after proving a file can be written there.

    Checked before the work starts, so that an unwritable --data-dir or
    --cache-dir is one line naming the flag, not an OSError traceback from
    the first file copied or the first feature saved.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write to {flag} {folder}: {error.strerror or error}") from None
    return folder


def check_new_file(path, flag: str = "--json") -> Path | None:
    """Before a long run: ``path`` must not exist yet (results are never overwritten) and its folder must take
    a file, so that a typo costs a second, not the whole table at the end. None passes through."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.exists():
        raise UserError(f"{flag} {path} already exists; choose another path (results are never overwritten)")
    writable_folder(path.parent, f"the folder of {flag}")
    return path


def place_file(source: Path, target: Path, link: bool) -> bool:
    """Copy (or symlink) ``source`` to ``target``; an existing target is left alone.

    Returns True if a file was written. Re-running a prepare step is therefore
    cheap and never clobbers anything already there.
    """
    if target.exists() or target.is_symlink():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        target.symlink_to(Path(source).resolve())
    else:
        shutil.copy2(source, target)
    return True


def check_apart(output, source, flag: str = "--data-dir") -> None:
    """Refuse an output folder inside the source folder, or around it: the source is only read."""
    output, source = Path(output).resolve(), Path(source).resolve()
    if output.is_relative_to(source) or source.is_relative_to(output):
        raise UserError(
            f"{flag} {output} overlaps {source}, which is only read, never written to; "
            f"choose a {flag} outside it"
        )


def find_folder_with(root: Path, *children: str) -> Path | None:
    """The shallowest folder under ``root`` (itself included) holding all ``children``."""
    root = Path(root)
    candidates = [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
    for folder in candidates:
        if all((folder / child).exists() for child in children):
            return folder
    return None
