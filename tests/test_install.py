"""The install is reproducible: the lock pins every package, agrees with the
ranges of requirements.txt, and CI runs exactly the README's test command."""
import os
import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.join(os.path.dirname(__file__), "..")
TEST_COMMAND = "python -m pip install -r requirements-lock.txt && python -m pytest -q"


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def requirement_lines(text):
    lines = (line.split("#")[0].strip() for line in text.splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def test_the_lock_pins_every_package_exactly():
    pins = requirement_lines(read("requirements-lock.txt"))
    assert len(pins) > 20    # the transitive closure, not just the direct ranges
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "==" and "*" not in spec.version, str(pin)


def test_the_lock_satisfies_the_ranges_of_requirements_txt():
    locked = {canonicalize_name(r.name): next(iter(r.specifier)).version
              for r in requirement_lines(read("requirements-lock.txt"))}
    for wanted in requirement_lines(read("requirements.txt")):
        name = canonicalize_name(wanted.name)
        assert name in locked, f"{wanted.name} is in requirements.txt but not in the lock"
        assert wanted.specifier.contains(locked[name], prereleases=True), \
            f"the lock's {wanted.name}=={locked[name]} is outside {wanted.specifier}"


def test_ci_runs_exactly_the_readme_test_command():
    readme = read("README.md")
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    assert any(block.strip() == TEST_COMMAND for block in blocks), \
        "the README's test command is not in a bash block of its own"
    ci_lines = [line.strip() for line in read(".ci/run").splitlines()]
    assert TEST_COMMAND in ci_lines
