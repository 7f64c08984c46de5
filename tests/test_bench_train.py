"""tools/bench_train.py: the training-throughput benchmark runs on CPU and refuses bad options."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "bench_train.py"
SMALL = ["--backbone", "smallcnn", "--image-size", "32", "--embedding-dim", "32",
         "--iterations", "2", "--warmup", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("data", "classes", "per_class", "precision"),
                         [("random", 16, 5, "fp32"), ("synthetic", 4, 3, "fp32"),
                          ("random", 4, 3, "bf16")])
def test_benchmark_runs_on_cpu(bench, tmp_path, capsys, data, classes, per_class, precision):
    out = tmp_path / "result.json"
    argv = [*SMALL, "--data", data, "--classes-per-batch", str(classes),
            "--samples-per-class", str(per_class), "--source-size", "200x150",
            "--precision", precision, "--json", str(out)]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["batch_size"] == classes * per_class
    assert result["images_per_second"] > 0
    assert result["device"] == "cpu" and result["iterations"] == 2
    assert result["precision"] == precision
    if data == "synthetic":
        assert result["loader_images_per_second"] > 0 and result["timed_includes_loading"]
    else:
        assert "loader_images_per_second" not in result
    table = capsys.readouterr().out
    assert "images/second" in table and f"{classes * per_class} ({classes} classes" in table
    assert any(line.split() == ["precision", precision] for line in table.splitlines())


def test_bad_method_exits_2_naming_the_allowed_values(bench, capsys):
    from irbook.incremental.methods import METHODS

    with pytest.raises(SystemExit) as exited:
        bench.main(["--method", "nope"])
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "--method" in message and "'nope'" in message
    assert all(name in message for name in METHODS)


@pytest.mark.parametrize("argv", [["--image-size", "8"], ["--data", "jpeg"],
                                  ["--iterations", "0"], ["--source-size", "500"],
                                  ["--precision", "fp16"]])
def test_bad_values_exit_2(bench, capsys, argv):
    with pytest.raises(SystemExit) as exited:
        bench.main(argv)
    assert exited.value.code == 2
    assert argv[0] in capsys.readouterr().err
