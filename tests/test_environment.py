"""pyproject.toml and environment.yml describe the same environment."""

import re
import tomllib

import yaml

from irbook.paths import REPO_ROOT


def _pyproject():
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _conda():
    return yaml.safe_load((REPO_ROOT / "environment.yml").read_text())


def _pins(requirements):
    pins = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", req.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_python_versions_agree():
    python = next(d for d in _conda()["dependencies"] if isinstance(d, str)
                  and d.startswith("python"))
    assert python == "python=3.11"
    assert ">=3.11" in _pyproject()["project"]["requires-python"]


def test_every_exact_pin_appears_in_both():
    project = _pyproject()["project"]
    pip = next(d["pip"] for d in _conda()["dependencies"] if isinstance(d, dict))
    assert _pins(project["dependencies"]) == _pins(pip)
    assert _pins(project["dependencies"]) == {"torch": "2.14.1", "torchvision": "0.29.1",
                                              "jupyter-book": "1.0.4.post1"}


def test_conda_installs_the_package_with_its_dev_extra():
    project = _pyproject()["project"]
    pip = next(d["pip"] for d in _conda()["dependencies"] if isinstance(d, dict))
    editable = [line for line in pip if line.startswith("-e")]
    assert editable, "environment.yml must install the package itself"
    extras = re.search(r"\[(.*)\]", editable[0]).group(1).split(",")
    assert set(extras) <= set(project["optional-dependencies"])
    assert "dev" in extras
    assert "faiss-gpu" in " ".join(project["optional-dependencies"]["gpu"])
