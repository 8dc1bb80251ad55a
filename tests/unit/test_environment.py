"""One set of pins: requirements.txt. pyproject.toml, environment.yml and the Makefile follow it."""

import re
import tomllib
from importlib import metadata

import yaml

from support import REPO

ROOT = REPO


def pins_in(lines):
    return {
        m.group(1).lower(): m.group(2)
        for line in lines
        if (m := re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)\s*", line))
    }


def requirements():
    return pins_in((ROOT / "requirements.txt").read_text().splitlines())


def test_requirements_pin_every_package_exactly_and_torch_to_2_13_0():
    lines = [
        ln.strip()
        for ln in (ROOT / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert len(lines) == len(requirements()), "every requirement needs an exact == pin"
    assert requirements()["torch"] == "2.13.0"
    for package in ["torch", "jupyterlab", "nbgrader", "matplotlib", "numpy", "pandas", "nbval"]:
        assert package in requirements(), f"the design card's package {package} is not pinned"


def test_pyproject_reads_its_dependencies_from_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dependencies" not in project["project"], "pins belong in requirements.txt only"
    assert project["project"]["dynamic"] == ["dependencies"]
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert project["project"]["requires-python"] == ">=3.11,<3.14"


def test_environment_yml_has_python_3_11_the_same_pins_and_the_package_editable():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pins_in(pip_section) == requirements()
    assert "-e ." in pip_section


def test_makefile_installs_from_requirements_txt_and_pins_nothing_itself():
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.txt" in makefile
    assert not re.search(r"\b[A-Za-z0-9_\-]+==\d", makefile), "the Makefile must not carry its own pins"


def test_the_installed_environment_matches_the_pins():
    for package, version in requirements().items():
        installed = metadata.version(package)
        assert installed.split("+")[0] == version, f"{package} {installed} installed, {version} pinned: run make setup"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
