"""minicnn.io.images: file -> pixels -> model input, and the errors for bad files."""
import numpy as np
import pytest
from PIL import Image

from minicnn.io.images import ImageReadError, Preprocess, read_image, to_input, to_pixels


def test_resize_shorter_side_then_centre_crop(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(90, 150, 3), dtype=np.uint8)      # H=90, W=150
    Image.fromarray(arr).save(tmp_path / "wide.png")
    got = read_image(tmp_path / "wide.png", Preprocess(resize=64, crop=64))
    # by hand: shorter side 90 -> 64, so width 150 -> int(150 * 64 / 90) = 106 (torchvision
    # truncates), then the crop starts at round((106 - 64) / 2) = 21
    want = Image.fromarray(arr).resize((106, 64), Image.BILINEAR)
    want = np.asarray(want)[:, 21:21 + 64]
    np.testing.assert_array_equal(got, want)


def test_imagenet_style_crop_is_smaller_than_resize(tmp_path):
    arr = np.zeros((300, 256, 3), np.uint8)
    arr[150, 128] = 255                                                 # centre pixel survives
    Image.fromarray(arr).save(tmp_path / "tall.png")
    got = read_image(tmp_path / "tall.png", Preprocess(resize=256, crop=224))
    assert got.shape == (224, 224, 3)
    assert got[150 - (300 - 224) // 2, 128 - 16].max() == 255


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    base = Image.fromarray(np.full((64, 64, 3), 120, np.uint8))
    im = base.convert("L").convert(mode) if mode != "I;16" else Image.fromarray(np.full((64, 64), 120, np.uint16))
    im.save(tmp_path / "x.png")
    got = read_image(tmp_path / "x.png")
    assert got.shape == (64, 64, 3) and got.dtype == np.uint8
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: no such file"):
        read_image(tmp_path / "nope.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.png: not an image"):
        read_image(tmp_path / "notes.png")


def test_truncated_image(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: damaged or truncated"):
        read_image(tmp_path / "cut.png")


def test_to_input_normalises_and_round_trips():
    prep = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.1))
    pixels = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = to_input(pixels, prep)
    assert x.dtype == np.float32 and x.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(x[1, 2, 3, 4], (pixels[1, 3, 4, 2] / 255 - 0.3) / 0.1, rtol=1e-6)
    np.testing.assert_allclose(to_pixels(x, prep) * 255, pixels, atol=1e-3)
    assert to_input(pixels[0], prep, dtype=np.float64).dtype == np.float64
