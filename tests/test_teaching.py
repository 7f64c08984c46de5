"""Every chapter notebook teaches: exercises with hidden solutions and a table of things to try."""

import json
import re

import pytest

from irbook.chapters import CHAPTERS


def _cell(key, cell_id):
    notebook = json.loads(CHAPTERS[key].notebook_path.read_text())
    found = [c for c in notebook["cells"] if c.get("id") == cell_id]
    assert len(found) == 1 and found[0]["cell_type"] == "markdown", (key, cell_id)
    return "".join(found[0]["source"])


@pytest.mark.parametrize("key", sorted(CHAPTERS))
def test_three_exercises_with_hidden_solutions_one_asking_for_a_prediction(key):
    text = _cell(key, "cell-exercises")
    exercises = re.findall(r"\*\*Exercise \d+\.\*\*(.*?)```\{admonition\} Solution\n:class: "
                           r"dropdown\n\n(.+?)\n```", text, flags=re.S)
    assert len(exercises) >= 3 and len(exercises) == text.count("**Exercise ")
    assert any("Predict before you run" in question for question, _ in exercises)
    assert all(len(solution) > 80 for _, solution in exercises)


@pytest.mark.parametrize("key", sorted(CHAPTERS))
def test_things_to_try_name_real_parameters(key):
    rows = re.findall(r"^\| `([a-z_0-9]+)` \| (.+?) \| (.+?) \|$", _cell(key, "cell-things-to-try"),
                      flags=re.M)
    names = {p.name for p in CHAPTERS[key].spec.params}
    assert len(rows) >= 4
    assert {name for name, _, _ in rows} <= names
