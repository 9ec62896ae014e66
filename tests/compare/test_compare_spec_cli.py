"""The shipped comparison spec resolves; bad compare arguments are one-line errors (exit 2)."""
import pytest

import invflow
from invflow.cli import main
from invflow.compare import load_spec, spec_names
from invflow.compare.spec import Budget, CompareSpec

PAPER_MIXINGS = {"lu", "emerging", "periodic", "woodbury", "me-woodbury"}


def test_woodbury_paper_spec_builds_every_model_on_mnist() -> None:
    assert "woodbury-paper-tiny" in spec_names()
    spec = load_spec("woodbury-paper-tiny")
    assert len(spec.presets) == 7 and spec.seeds >= 2 and spec.budget.steps
    configs = [spec.config(p, seed=1) for p in spec.presets]
    assert {c.model.mixing.name for c in configs} == PAPER_MIXINGS
    assert {c.model.coupling.name for c in configs} == {"affine", "spline", "macow"}
    for c in configs:
        assert c.data.dataset == "mnist" and c.train.seed == 1 and c.train.steps == spec.budget.steps
        assert c.name.endswith("-tiny") and c.train.warmup_steps > 0
        model = invflow.build_model(c)
        assert model.input_shape == (1, c.data.image_size, c.data.image_size)


def test_command_line_values_override_the_spec() -> None:
    spec = load_spec("woodbury-paper-tiny").with_cli(2, None, 5.0, {"data.image_size": 8})
    assert spec.seeds == 2 and spec.budget == Budget(minutes=5.0)
    assert spec.overrides["data.image_size"] == 8 and spec.overrides["data.dataset"] == "mnist"


def test_a_budget_is_steps_or_minutes() -> None:
    for steps, minutes in ((None, None), (3, 1.0), (0, None), (None, -1.0)):
        with pytest.raises(ValueError):
            Budget(steps, minutes)


@pytest.mark.parametrize("change, message", [
    ({"presets": ()}, "at least one preset"),
    ({"presets": ("a", "a")}, "listed twice"),
    ({"seeds": 0}, "seeds must be"),
    ({"overrides": {"train.seed": 3}}, "sets train.seed itself"),
])
def test_invalid_specs(change, message) -> None:
    args = {"presets": ("glow-mnist-tiny",), "seeds": 2, "budget": Budget(steps=3), "overrides": {}}
    with pytest.raises(ValueError, match=message):
        CompareSpec(**{**args, **change})


@pytest.mark.parametrize("argv, message", [
    (["compare", "glow-mnist-tiny"], "exactly one budget"),
    (["compare", "glow-mnist-tiny", "--spec", "woodbury-paper-tiny"], "not both"),
    (["compare", "--spec", "no-such-spec"], "no comparison spec"),
    (["compare", "no-such-preset", "--steps", "2"], "unknown preset"),
    (["compare", "glow-mnist-tiny", "--steps", "2", "--set", "train.seed=4"], "train.seed"),
    (["compare", "glow-mnist-tiny", "--steps", "2", "--set", "model.nope=1"], "nope"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path, capsys) -> None:
    assert main([*argv, "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invflow: error:") and message in err and err.count("\n") == 1


def test_steps_and_minutes_are_exclusive(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "glow-mnist-tiny", "--steps", "2", "--minutes", "1"])
    assert exit_.value.code == 2 and "not allowed with" in capsys.readouterr().err


TOY_AND_MNIST = "glow-toy-rings measures bits per point of rings and glow-mnist-tiny bits/dim of mnist"
TWO_TOYS = "bits per point of rings and glow-toy-2moons bits per point of 2moons"
COND = "glow-mnist-cond-tiny bits/dim of mnist 1x28x28 at 8 bits given its labels"


@pytest.mark.parametrize(
    ("presets", "message"),
    [
        (["glow-toy-rings", "glow-mnist-tiny"], TOY_AND_MNIST),
        (["glow-toy-rings", "glow-toy-2moons"], TWO_TOYS),
        (["glow-mnist-tiny", "glow-mnist-cond-tiny"], COND),
    ],
)
def test_presets_measuring_different_quantities_are_refused_before_training(tmp_path, capsys, presets,
                                                                              message) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", *presets, "--seeds", "1", "--steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "compare ranks one quantity" in err and message in err, err
    assert not out.exists()
