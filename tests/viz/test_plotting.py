"""minicnn.viz.plotting: the display scalings and the blog post's two pictures, on hand-built
arrays, and that importing minicnn.viz leaves matplotlib's backend alone."""
import subprocess
import sys

import numpy as np
import pytest

from minicnn.viz.plotting import colored_gradient, grayscale_gradient, scale_to_max, unit_range


def test_colored_gradient_min_max_per_image():
    grad = np.zeros((2, 3, 1, 2))
    grad[0, 0, 0, 0], grad[0, 1, 0, 1] = -2.0, 2.0    # zero maps to 0.5
    grad[1, 2, 0, 1] = 10.0                           # min 0 -> 0, max 10 -> 1
    c = colored_gradient(grad)
    assert c.shape == (2, 1, 2, 3)
    assert c[0, 0, 0, 0] == 0.0 and c[0, 0, 1, 1] == 1.0 and c[0, 0, 0, 2] == 0.5
    assert c[1, 0, 1, 2] == 1.0 and c[1].min() == 0.0
    assert np.all(colored_gradient(np.ones((1, 3, 2, 2))) == 0.0)   # flat: no division by 0


def test_grayscale_sums_abs_and_clips_at_percentile():
    grad = np.zeros((1, 3, 1, 100))
    grad[0, 0, 0, :] = np.arange(100)
    grad[0, 1, 0, :] = -np.arange(100)         # |.| summed: 2 * arange
    g = grayscale_gradient(grad, percentile=50)
    assert g.shape == (1, 1, 100)
    np.testing.assert_allclose(g[0, 0, :50], np.arange(50) / 49.5)
    assert np.all(g[0, 0, 50:] == 1.0)


def test_unit_range_and_scale_to_max():
    np.testing.assert_array_equal(unit_range(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(unit_range(np.full(3, 7.0)), [0.0, 0.0, 0.0])
    per_row = unit_range(np.array([[0.0, 2.0], [5.0, 10.0]]), axis=1)
    np.testing.assert_array_equal(per_row, [[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(scale_to_max(np.array([0.0, 1.0, 4.0])), [0.0, 0.25, 1.0])
    np.testing.assert_array_equal(scale_to_max(np.zeros(2)), [0.0, 0.0])


def test_pictures_reject_a_wrong_rank():
    with pytest.raises(ValueError, match=r"grad must be 4-D, shaped \(N, C, H, W\), got shape \(3, 4\)"):
        colored_gradient(np.zeros((3, 4)))
    with pytest.raises(TypeError, match=r"grad must be a numpy.ndarray"):
        grayscale_gradient([[0.0]])


def test_importing_viz_keeps_the_backend():
    code = ("import matplotlib; matplotlib.use('svg'); import minicnn.viz, minicnn.explain; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "svg", out.stderr
