"""The command line's LRP: ``--method lrp --rule NAME`` for saliency maps, ``trace --method
lrp`` (the relevance figure and the ledger printed), and one line + exit 2 for a rule that is
unknown, does not apply, or comes without --method lrp."""
import os

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import saliency
from minicnn.explain import slug
from minicnn.io.images import read_image, to_input

# the tiny saved model, its sample picture and the runner of tests/test_cli.py
from tests.test_cli import CLASSES, image_path, model_path, run  # noqa: E402,F401


def _predicted(model_path, image_path):
    model = minicnn.load(model_path)
    x = to_input(read_image(image_path))
    return model, x, int(model.forward(x).argmax())


@pytest.mark.parametrize("rule", [None, "epsilon-gamma-box", "lrp-0"])
def test_saliency_with_lrp_writes_the_rules_map(capsys, tmp_path, model_path, image_path, rule):
    out_dir = tmp_path / "o"
    argv = ["saliency", image_path, "--model", model_path, "--out", out_dir, "--method", "lrp"]
    code, out, err = run(capsys, *argv, *(["--rule", rule] if rule else []))
    assert code == 0 and err == ""
    model, x, c = _predicted(model_path, image_path)
    kind = "lrp" if rule is None else f"lrp-{rule}"
    stem = f"pic_{kind}_{slug(CLASSES[c])}"
    assert sorted(os.listdir(out_dir)) == [f"{stem}.npy", f"{stem}.png", f"{stem}_overlay.png"]
    want = saliency.to_map(saliency.lrp(model, x, rule=rule or saliency.DEFAULT_RULE),
                           x.shape[2:])[0]
    np.testing.assert_allclose(np.load(out_dir / f"{stem}.npy"), want, rtol=1e-6)


def test_trace_with_lrp_draws_the_relevance_and_prints_the_ledger(capsys, tmp_path, model_path,
                                                                  image_path):
    code, out, err = run(capsys, "trace", image_path, "--model", model_path, "--out", tmp_path,
                         "--method", "lrp", "--rule", "z-plus")
    assert code == 0 and err == ""
    model, x, c = _predicted(model_path, image_path)
    name = f"pic_trace-lrp-z-plus_{slug(CLASSES[c])}.png"
    assert f"the relevance (z-plus) of the score of {CLASSES[c]} at 6 steps, 4 back to input" \
        in out and name in out
    with Image.open(tmp_path / name) as im:
        assert im.format == "PNG"
    lines = out.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("node ")))
    assert lines[head].split() == ["node", "layer", "rule", "relevance", "out", "passed", "on",
                                   "bias", "stabiliser", "batchnorm", "residual"]
    assert [line.split()[:3] for line in lines[head + 2:head + 7]] == [
        ["4", "Linear", "z-plus"], ["3", "Flatten", "pass"], ["2", "MaxPool2d", "pass"],
        ["1", "ReLU", "pass"], ["0", "Conv2d", "z-plus"]]
    score = float(model.forward(x)[0, c])
    assert lines[-1].startswith(f"score {score:.6g} = input ")


@pytest.mark.parametrize("argv, message", [
    (["saliency", "--method", "lrp", "--rule", "epsilon-pluss"],
     "--rule epsilon-pluss: unknown LRP rule or composite 'epsilon-pluss': composites are "
     "epsilon-plus, epsilon-gamma-box, epsilon-alpha2-beta1, epsilon-plus-flat; rules (for every "
     "layer with weights) are lrp-0, epsilon, gamma, z-plus, alpha1-beta0, alpha2-beta1"),
    (["saliency", "--rule", "z-plus"],
     "--rule chooses how LRP shares relevance out; it applies to --method lrp, not gradient"),
    (["trace", "--rule", "gamma"],
     "--rule chooses how LRP shares relevance out; it applies to --method lrp, not gradient"),
])
def test_a_bad_rule_is_one_line(capsys, tmp_path, model_path, image_path, argv, message):
    command, *options = argv
    code, out, err = run(capsys, command, image_path, "--model", model_path, "--out",
                         tmp_path / "o", *options)
    assert code == 2 and out == ""
    assert err == f"minicnn: error: {message}\n"
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_the_box_rule_without_the_inputs_bounds_is_one_line(capsys, tmp_path, image_path):
    model = minicnn.Sequential([minicnn.Conv2d(3, 2, 3), minicnn.Flatten(),
                                minicnn.Linear(2 * 62 * 62, 3)])
    path = minicnn.save(model, tmp_path / "m.npz", meta={"class_names": CLASSES,
                                                         "input_shape": [3, 64, 64]})
    code, out, err = run(capsys, "saliency", image_path, "--model", path, "--out", tmp_path / "o",
                         "--method", "lrp", "--rule", "epsilon-gamma-box")
    assert code == 2 and out == ""
    assert err.startswith("minicnn: error: --rule epsilon-gamma-box: Conv2d '0': the rule z-box "
                          "needs the input's bounds")
