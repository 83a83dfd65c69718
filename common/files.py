"""Downloading data sets and laying them out without ever touching the user's copy.

Real users have a network, so the official URL through ``keras.utils.get_file``
stays the default path; these machines (and many lab rooms) do not, so every
download failure says which file is missing and how to point the command at a
local copy instead. Preparing a layout copies or links files; it never moves,
renames or deletes anything in the source.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from common.errors import UserError


def download(url: str, file_name: str, local_hint: str, extract: bool = True) -> Path:
    """``keras.utils.get_file`` with a clear offline error; returns the (extracted) path."""
    import keras

    try:
        return Path(keras.utils.get_file(file_name, origin=url, extract=extract))
    except Exception as error:  # get_file raises a bare Exception on URL failures
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"
        raise UserError(
            f"could not download {file_name} from {url} ({str(error).splitlines()[0][:200]}). "
            f"Without a network, put {file_name} in {cache}/, or {local_hint}"
        ) from None


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


def check_not_inside(target: Path, source: Path) -> None:
    """Refuse to write a prepared layout into (or over) the user's source folder."""
    target, source = Path(target).resolve(), Path(source).resolve()
    if target == source or source in target.parents:
        raise UserError(
            f"the output folder {target} lies inside the source {source}; "
            "choose a --data-dir outside it (the source is never written to)"
        )


def find_folder_with(root: Path, *children: str) -> Path | None:
    """The shallowest folder under ``root`` (itself included) holding all ``children``."""
    root = Path(root)
    candidates = [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
    for folder in candidates:
        if all((folder / child).exists() for child in children):
            return folder
    return None
