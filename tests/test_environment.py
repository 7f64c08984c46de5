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


def _extras(spec: str) -> list[str]:
    """The extras of an editable install spec such as ``-e ".[cpu,dev]"``."""
    match = re.search(r"\.\[([^\]]*)\]", spec)
    return [extra.strip() for extra in match.group(1).split(",")] if match else []


def _conda_extras() -> list[str]:
    pip = next(d["pip"] for d in _conda()["dependencies"] if isinstance(d, dict))
    editable = [line for line in pip if line.startswith("-e")]
    assert len(editable) == 1, "environment.yml must install the package itself, once"
    return _extras(editable[0])


def _makefile_extras() -> list[list[str]]:
    text = (REPO_ROOT / "Makefile").read_text()
    installs = [line for line in text.splitlines() if "pip install" in line and " -e " in line]
    assert installs, "the Makefile must install the package itself"
    return [_extras(line) for line in installs]


def _requested(extras: list[str]) -> set[str]:
    """Lower-case distribution names asked for by the base dependencies plus ``extras``."""
    optional = _pyproject()["project"]["optional-dependencies"]
    requirements = list(_pyproject()["project"]["dependencies"])
    for extra in extras:
        requirements += optional[extra]
    return {re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower() for req in requirements}


def test_faiss_flavours_are_alternative_extras():
    project = _pyproject()["project"]
    assert not {"faiss", "faiss-cpu", "faiss-gpu"} & _requested([])  # not in the base deps
    assert [r.split(">")[0] for r in project["optional-dependencies"]["cpu"]] == ["faiss-cpu"]
    assert [r.split(">")[0] for r in project["optional-dependencies"]["gpu"]] == ["faiss-gpu"]


def test_conda_and_make_install_the_same_extras():
    assert _conda_extras() == ["cpu", "dev"]
    assert _makefile_extras() == [["cpu", "dev"]]


def test_no_install_path_asks_for_both_faiss_flavours():
    paths = {"base dependencies": [], "environment.yml": _conda_extras()}
    paths.update({f"Makefile install {i}": extras
                  for i, extras in enumerate(_makefile_extras())})
    for name, extras in paths.items():
        assert set(extras) <= set(_pyproject()["project"]["optional-dependencies"]), name
        faiss = _requested(extras) & {"faiss-cpu", "faiss-gpu"}
        assert len(faiss) <= 1, f"{name} installs {sorted(faiss)} (both provide `faiss`)"
        if name != "base dependencies":
            assert faiss, f"{name} installs no FAISS, which the book requires"
