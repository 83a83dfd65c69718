"""The students' copies of the labs: every reference answer replaced by a stub.

    python -m labs.student OUT_DIR            # every labs/*.ipynb
    python -m labs.student OUT_DIR labs/02_flowers.ipynb

The committed notebooks carry a reference answer in each exercise, between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's markers), so that
CI runs the check cells against a known-good answer. A student's copy keeps
everything else (the text, the lesson's cells, the check cells) and puts
``# YOUR CODE HERE`` and ``raise NotImplementedError()`` where the answer was:
the check cells then tell the student whether their own answer holds.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
LABS = Path(__file__).resolve().parent


def strip_solutions(source: str) -> str:
    """``source`` with each BEGIN/END SOLUTION region (markers included) replaced by the stub, indentation kept."""
    lines, inside = [], False
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{BEGIN} inside a solution region")
            indent = line[: len(line) - len(line.lstrip())]
            lines += [indent + stub for stub in STUB]
            inside = True
        elif marker == END:
            if not inside:
                raise ValueError(f"{END} without {BEGIN}")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(lines)


def student_copy(notebook_path: Path, out_dir: Path) -> Path:
    """Write the student's copy of one notebook into ``out_dir`` (same file name); returns its path."""
    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
    notebook.metadata.pop("jupytext", None)  # the copy is not paired with the teacher's .py source
    target = out_dir / notebook_path.name
    nbformat.write(notebook, target)
    return target


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder for the students' copies (made if missing)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to copy (default: every labs/*.ipynb)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(LABS.glob("*.ipynb"))
    if args.out_dir.resolve() == LABS:
        parser.error("OUT_DIR must not be labs/ itself: the copies would replace the teacher's notebooks")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    written = [student_copy(path, args.out_dir) for path in notebooks]
    print(f"wrote {len(written)} student notebook(s) to {args.out_dir}")
    return written


if __name__ == "__main__":
    main()
