"""Parameter validation: bad input is refused before any work, with a useful message."""

import pytest

from irbook.chapters import CHAPTERS, get_chapter, resolve_in_notebook
from irbook.params import Param, ParameterError, ParamSpec

CH02 = get_chapter("ch02")


def test_profile_values_are_returned_validated():
    values = CH02.resolve("smoke")
    assert values["profile"] == "smoke"
    assert values["backbone"] == "smallcnn"
    assert isinstance(values["image_size"], int)


def test_override_from_command_line_strings_is_converted():
    values = CH02.resolve("smoke", {"image_size": "96", "pretrained": "false", "pooling": "gem"})
    assert values["image_size"] == 96
    assert values["pretrained"] is False
    assert values["pooling"] == "gem"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"poolng": "gem"}, "unknown parameter(s) poolng"),
        ({"pooling": "avg"}, "'pooling' got 'avg'; allowed: one of 'all', 'mac'"),
        ({"image_size": "big"}, "'image_size' got 'big'; allowed: a int in [32, 2048]"),
        ({"image_size": 8}, "'image_size' got 8"),
        ({"image_size": 64.5}, "'image_size' got 64.5"),
        ({"pretrained": "maybe"}, "'pretrained' got 'maybe'; allowed: true or false"),
        ({"seed": -1}, "'seed' got -1"),
    ],
)
def test_bad_values_name_the_parameter_and_the_allowed_values(overrides, fragment):
    with pytest.raises(ParameterError) as error:
        CH02.resolve("demo", overrides)
    assert fragment in str(error.value)


def test_unknown_profile_is_refused():
    with pytest.raises(ParameterError, match="'profile' got 'fast'; allowed: 'smoke', 'demo'"):
        CH02.resolve("fast")


def test_unknown_chapter_lists_available_ones():
    with pytest.raises(ValueError, match="unknown chapter 'ch99'; available: ch02"):
        get_chapter("ch99")


def test_notebook_namespace_with_none_takes_profile_values():
    namespace = {name: None for name in CH02.spec.names}
    namespace.update(profile="smoke", pooling="mac")
    values = resolve_in_notebook("ch02", namespace)
    assert values["pooling"] == "mac"
    assert values["image_size"] == CH02.spec.profiles["smoke"]["image_size"]


def test_a_profile_missing_a_value_is_a_declaration_error():
    with pytest.raises(ValueError, match="lacks values"):
        ParamSpec(params=(Param("x", int, "x"),), profiles={"smoke": {}})


@pytest.mark.parametrize("chapter", list(CHAPTERS.values()), ids=list(CHAPTERS))
def test_every_profile_of_every_chapter_validates(chapter):
    for profile in ("smoke", "demo", "full"):
        chapter.resolve(profile)


def test_choices_match_the_library():
    from irbook.models import BACKBONES, POOLINGS

    declared = {param.name: param.choices for param in CH02.spec.params}
    assert set(declared["backbone"]) == set(BACKBONES)
    assert set(declared["pooling"]) - {"all"} == set(POOLINGS)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", float("nan"), float("inf")])
def test_non_finite_floats_are_refused(value):
    bounded = Param("alpha", float, "weight", low=0.0, high=10.0)
    with pytest.raises(ParameterError, match=r"'alpha' got .*; allowed: a float in \[0, 10\]"):
        bounded.coerce(value)
    unbounded = Param("beta", float, "weight")  # no range would catch inf here
    with pytest.raises(ParameterError, match="'beta' got .*; allowed: a float"):
        unbounded.coerce(value)


def test_finite_float_strings_are_converted():
    assert Param("alpha", float, "weight", low=0.0).coerce("1e-3") == 0.001


def test_profile_given_as_an_override_is_refused():
    with pytest.raises(ParameterError, match="'profile' cannot be given with -p .*'full'.*"
                                             "use --profile, one of smoke, demo, full"):
        CH02.resolve("smoke", {"profile": "full"})
    assert CH02.resolve("smoke", {"profile": None})["profile"] == "smoke"  # None: not given


def test_cuda_without_a_gpu_is_a_parameter_error(monkeypatch):
    import torch

    from irbook.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError) as error:
        resolve_device("cuda")
    assert str(error.value) == ("parameter 'device' is 'cuda' but torch sees no GPU; "
                                "allowed here: auto, cpu")
    assert isinstance(error.value, ValueError)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ParameterError, match="'device' got 'gpu'; allowed: auto, cpu, cuda"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda"


def test_a_misspelt_name_in_the_notebook_namespace_is_refused():
    namespace = {"profile": "smoke", "seed": None, "alpah": 2.0, "In": [], "_": None,
                 "np": __import__("numpy")}
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) alpah; known: profile"):
        resolve_in_notebook("ch05", namespace)
    del namespace["alpah"]
    assert resolve_in_notebook("ch05", namespace)["profile"] == "smoke"


def test_seeds_lists_the_repeated_seeds():
    from irbook.chapters import Session

    params = CHAPTERS["ch06"].resolve("smoke", {"seed": 5, "seeds": 3})
    assert Session(CHAPTERS["ch06"], params, "cpu", None).seeds == [5, 6, 7]
    with pytest.raises(ParameterError, match="'seeds' got 0"):
        CHAPTERS["ch06"].resolve("smoke", {"seeds": 0})


def test_none_is_a_value_where_it_is_one_of_the_choices():
    assert CHAPTERS["ch02"].resolve("smoke", {"whitening": "none"})["whitening"] == "none"
    with pytest.raises(ParameterError, match="'backbone' may not be empty"):
        CHAPTERS["ch02"].resolve("smoke", {"backbone": "none"})
