"""The lab notebooks of labs/: committed clean, paired with their sources, and complete as lessons.

nbmake executes each notebook (pytest.ini collects labs/); these checks are
what an execution cannot see: outputs committed by mistake, a notebook whose
readable source (the jupytext .py file) says something else, a lesson
without its section, equations, exercises or check cells.
"""
import configparser
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

LABS = Path(__file__).resolve().parents[1] / "labs"
NOTEBOOKS = sorted(LABS.glob("*.ipynb"))
SECTION = re.compile(r"\*\*Book section:\*\*\s*(12\.\d(\.\d)?|the slides)")
EQUATION = re.compile(r"\$[^$\n]+\$")


def markdown(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]


def exercises(notebook) -> list[list]:
    """The cells of each exercise: from its '### Exercise' heading to the next one (or the end)."""
    groups, current, started = [], None, False
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and re.search(r"^## Exercises\b", cell.source, re.M):
            started = True
        if not started:
            continue
        if cell.cell_type == "markdown" and re.search(r"^### Exercise \d", cell.source, re.M):
            current = [cell]
            groups.append(current)
        elif current is not None:
            current.append(cell)
    return groups


def test_at_least_six_lessons():
    assert len(NOTEBOOKS) >= 6, [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [index for index, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them (labs/README.md, 'Editing')"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_in_sync_with_its_source(path):
    source = path.with_suffix(".py")
    assert source.is_file(), f"{path.name} has no paired {source.name}"
    notebook = nbformat.read(path, as_version=4)
    paired = jupytext.read(source)
    assert [(c.cell_type, c.source) for c in notebook.cells] == [(c.cell_type, c.source) for c in paired.cells], (
        f"{path.name} and {source.name} differ: run jupytext --sync labs/*.ipynb")
    assert notebook.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_a_lesson_with_section_equations_steps_and_checked_exercises(path):
    notebook = nbformat.read(path, as_version=4)
    text = "\n".join(markdown(notebook))
    assert SECTION.search(notebook.cells[0].source), f"{path.name}: the first cell names no book section"
    assert len(EQUATION.findall(text)) >= 3, f"{path.name}: fewer than 3 $...$ equations"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(code) >= 5, f"{path.name}: {len(code)} code cells"
    parameters = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and 'os.environ.get("LABS_QUICK"' in parameters[0].source, (
        f"{path.name}: one cell tagged 'parameters' must read LABS_QUICK")
    groups = exercises(notebook)
    assert 2 <= len(groups) <= 4, f"{path.name}: {len(groups)} exercises under '## Exercises'"
    for group in groups:
        checks = [cell for cell in group if cell.cell_type == "code" and "check" in cell.metadata.get("tags", [])]
        title = group[0].source.splitlines()[0]
        assert checks and all("assert " in cell.source for cell in checks), f"{path.name}, {title}: no check cell"
        answer = [cell for cell in group if cell.cell_type == "code" and cell not in checks]
        assert answer and group.index(answer[0]) < group.index(checks[0]), f"{path.name}, {title}: check before answer"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_imports_in_one_cell_at_the_top(path):
    """A later API change of the library is then a one-place fix per notebook."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    project = re.compile(r"^(from|import) (common|cats_dogs|flowers|mmd|adaptation|segmentation|digits|deploy)\b", re.M)
    assert project.search(code[0]), f"{path.name}: the first code cell imports no project package"
    later = [index for index, source in enumerate(code[1:], 1) if project.search(source)]
    assert not later, f"{path.name}: project imports outside the first code cell (code cells {later})"


def test_teachers_page_has_a_row_per_notebook():
    page = (LABS / "README.md").read_text()
    for path in NOTEBOOKS:
        row = next((line for line in page.splitlines() if path.name in line and line.startswith("|")), None)
        assert row is not None, f"labs/README.md has no table row for {path.name}"


def test_pytest_executes_the_notebooks_in_their_quick_setting():
    config = configparser.ConfigParser()
    config.read(LABS.parent / "pytest.ini")
    assert "labs" in config["pytest"]["testpaths"].split()
    assert "--nbmake" in config["pytest"]["addopts"].split()
    assert 'os.environ.setdefault("LABS_QUICK", "1")' in (LABS / "conftest.py").read_text()


def test_every_exercise_answer_is_a_marked_solution():
    """What labs.student removes: each exercise's answer cell holds one BEGIN/END SOLUTION region."""
    for path in NOTEBOOKS:
        for group in exercises(nbformat.read(path, as_version=4)):
            answers = [cell.source for cell in group
                       if cell.cell_type == "code" and "check" not in cell.metadata.get("tags", [])]
            assert any("### BEGIN SOLUTION" in source and "### END SOLUTION" in source for source in answers), (
                f"{path.name}, {group[0].source.splitlines()[0]}: no marked reference answer")


def test_student_copies_keep_the_checks_and_lose_the_answers(tmp_path):
    from labs.student import main

    written = main([str(tmp_path)])
    assert sorted(path.name for path in written) == [path.name for path in NOTEBOOKS]
    for teacher, student in zip(NOTEBOOKS, sorted(written), strict=True):
        original, copy = nbformat.read(teacher, as_version=4), nbformat.read(student, as_version=4)
        assert len(copy.cells) == len(original.cells)
        text = "\n".join(cell.source for cell in copy.cells if cell.cell_type == "code")
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        assert text.count("raise NotImplementedError()") == len(exercises(original))
        checks = [cell.source for cell in original.cells if "check" in cell.metadata.get("tags", [])]
        assert checks == [cell.source for cell in copy.cells if "check" in cell.metadata.get("tags", [])]


def test_strip_solutions_keeps_the_indentation_and_refuses_unbalanced_markers():
    from labs.student import strip_solutions

    source = "a = 1\nif a:\n    ### BEGIN SOLUTION\n    b = 2\n    ### END SOLUTION\nprint(b)"
    assert strip_solutions(source) == "a = 1\nif a:\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(b)"
    for broken in ("### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION", "### BEGIN SOLUTION\n### BEGIN SOLUTION"):
        with pytest.raises(ValueError):
            strip_solutions(broken)
