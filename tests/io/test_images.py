"""minicnn.io.images: file -> pixels -> model input, and the errors for bad files."""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from minicnn.io.images import (ImageNote, ImageReadError, Preprocess, read_image, to_input,
                               to_pixels)


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


# ----------------------------------------------------------------------------- read as a viewer shows it

FLAT = Preprocess(resize=64, crop=64)  # 64 x 64 files go through unchanged


def test_16_bit_grey_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    k = np.arange(64 * 64).reshape(64, 64) % 256                        # the 8-bit answer
    values = (k * 257).astype(np.uint16)                                # k * 257 * 255 / 65535 = k
    values[0, :3] = [65535, 32768, 1000]                                # white, 127.5..., 3.89
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode == "I;16"                                        # a real 16-bit PNG
    got = read_image(tmp_path / "deep.png", FLAT)
    want = k.copy()
    want[0, :3] = [255, 128, 4]
    np.testing.assert_array_equal(got[..., 0], want)
    assert (got[..., 0] == got[..., 2]).all()


def test_float_image_in_0_1_is_fractions_of_white(tmp_path):
    k = np.arange(64 * 64).reshape(64, 64) % 256
    Image.fromarray((k / 255).astype(np.float32)).save(tmp_path / "f.tiff")
    with Image.open(tmp_path / "f.tiff") as im:
        assert im.mode == "F"
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff", FLAT)[..., 1], k)


def test_float_and_32_bit_images_beyond_their_range_are_stretched(tmp_path):
    f = np.zeros((64, 64), np.float32)
    f[0, :3] = [-1.0, 3.0, 0.0]                                         # min -1, max 3
    Image.fromarray(f).save(tmp_path / "f.tiff")
    got = read_image(tmp_path / "f.tiff", FLAT)[..., 0]
    assert list(got[0, :3]) == [0, 255, 64]                             # (0 + 1) / 4 * 255 = 63.75
    i = np.full((64, 64), 100_000, np.int32)
    i[0, 0], i[0, 1] = 200_000, 0                                       # beyond 16 bits
    Image.fromarray(i).save(tmp_path / "i.tiff")
    got = read_image(tmp_path / "i.tiff", FLAT)[..., 0]
    assert list(got[0, :3]) == [255, 0, 128]                            # 100000 / 200000 * 255
    i16 = np.full((64, 64), 65535, np.int32)                           # 16-bit data held as I
    Image.fromarray(i16).save(tmp_path / "i16.tiff")
    assert (read_image(tmp_path / "i16.tiff", FLAT) == 255).all()


def test_float_image_with_nan_is_refused(tmp_path):
    f = np.zeros((64, 64), np.float32)
    f[3, 3] = np.nan
    Image.fromarray(f).save(tmp_path / "nan.tiff")
    with pytest.raises(ImageReadError, match=r"nan\.tiff: a floating-point image holding NaN"):
        read_image(tmp_path / "nan.tiff")


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo: stored sideways, with EXIF orientation 6 (rotate 90 degrees clockwise to
    show). Shown, it is red on top and blue below; stored, red is on the left."""
    shown = np.zeros((64, 96, 3), np.uint8)                             # H=64, W=96
    shown[:32] = (220, 20, 20)
    shown[32:] = (20, 20, 220)
    stored = np.rot90(shown)                                            # (96, 64): red on the left
    assert (stored[:, :32, 0] > 200).all()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "phone.jpg", exif=exif,
                                                       quality=95)
    got = read_image(tmp_path / "phone.jpg", FLAT).astype(int)          # (64, 64, 3)
    assert abs(got[:28, :, 0].mean() - 220) < 10 and got[:28, :, 2].mean() < 30    # red on top
    assert abs(got[36:, :, 2].mean() - 220) < 10 and got[36:, :, 0].mean() < 30    # blue below


def test_multi_frame_file_gives_its_first_frame_and_says_so(tmp_path):
    frames = [Image.fromarray(np.full((64, 64, 3), c, np.uint8)) for c in (40, 200, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    pixels, notes = read_image(tmp_path / "anim.gif", FLAT, return_notes=True)
    assert (pixels == 40).all()
    assert notes == [f"{tmp_path / 'anim.gif'}: 3 frames; the first one was used"]
    with pytest.warns(ImageNote, match="3 frames; the first one was used"):
        read_image(tmp_path / "anim.gif", FLAT)


# ----------------------------------------------------------------------------- hostile and odd files

def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height 8-bit grey pixels but holds almost no data."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(10_000, 9_000), (40_000, 40_000)])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, width, height):
    """90 megapixels (Pillow would only warn) and 1.6 gigapixels (Pillow's own error): both
    the same ImageReadError, from a file of under 100 bytes."""
    (tmp_path / "bomb.png").write_bytes(_png_header(width, height))
    assert (tmp_path / "bomb.png").stat().st_size < 100
    with pytest.raises(ImageReadError, match=r"bomb\.png: .*more than .*89,478,485 pixels"):
        read_image(tmp_path / "bomb.png")


def test_extreme_aspect_ratio_is_refused(tmp_path):
    Image.fromarray(np.zeros((1, 100_000), np.uint8)).save(tmp_path / "strip.png")
    assert (tmp_path / "strip.png").stat().st_size < 1000
    with pytest.raises(ImageReadError, match=r"strip\.png: 100000x1: its longer side is more "
                                             r"than 20 times its shorter side"):
        read_image(tmp_path / "strip.png")
    Image.fromarray(np.zeros((64, 64 * 20), np.uint8)).save(tmp_path / "pano.png")
    assert read_image(tmp_path / "pano.png").shape == (64, 64, 3)          # 20:1 still passes


def test_a_folder_is_not_a_missing_file(tmp_path):
    (tmp_path / "pics.png").mkdir()
    with pytest.raises(ImageReadError, match=r"pics\.png: is a folder, not an image file"):
        read_image(tmp_path / "pics.png")


def test_unreadable_file_is_a_permission_error_not_damage(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "locked.png")
    (tmp_path / "locked.png").chmod(0)
    try:
        if os.access(tmp_path / "locked.png", os.R_OK):
            pytest.skip("running as root: permissions do not stop reads")
        with pytest.raises(ImageReadError, match=r"locked\.png: permission denied"):
            read_image(tmp_path / "locked.png")
    finally:
        (tmp_path / "locked.png").chmod(0o644)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(resize=10**9), ValueError, "preprocess resize must be an int in 1..2048, got 1000000000"),
    (dict(resize=64.0), TypeError, "preprocess resize must be an int in 1..2048, got 64.0"),
    (dict(resize=256, crop=300), ValueError, "preprocess crop must be an int in 1..256, got 300"),
    (dict(std=(0.2, 0.0, 0.2)), ValueError,
     r"preprocess std must be 3 finite numbers > 0 \(R, G, B\), got \[0.2, 0.0, 0.2\]"),
    (dict(mean=(0.5,)), ValueError, r"preprocess mean must be 3 finite numbers \(R, G, B\), got "
                                    r"\[0.5\]"),
    (dict(mean=("a", 0, 0)), TypeError, r"preprocess mean must be 3 numbers \(R, G, B\), got "
                                        r"\['a', 0, 0\]"),
    (dict(resample="lanczos"), ValueError,
     "preprocess resample must be one of bilinear, bicubic, got 'lanczos'"),
])
def test_preprocess_refuses_absurd_values(kwargs, error, message):
    with pytest.raises(error, match=message):
        Preprocess(**kwargs)
    with pytest.raises(error, match=message):
        Preprocess.from_meta({"preprocess": {k: list(v) if isinstance(v, tuple) else v
                                             for k, v in kwargs.items()}})


@pytest.mark.parametrize("resample", ["bilinear", "bicubic"])
def test_resize_and_crop_equal_torchvisions_transforms(tmp_path, resample):
    """Steps 1-4 against torchvision's own Resize(256) and CenterCrop(224) on the PIL image,
    with its matching interpolation (bicubic: how EfficientNet-B0's weights were trained):
    equal to the last pixel, on a photo-like image wider than tall and one taller than wide."""
    from tests.helpers.torchvision_oracle import import_torchvision
    tv = import_torchvision()
    T = tv.transforms
    mode = {"bilinear": T.InterpolationMode.BILINEAR,
            "bicubic": T.InterpolationMode.BICUBIC}[resample]
    rng = np.random.default_rng(5)
    for w, h in ((403, 301), (289, 517)):
        smooth = np.cumsum(rng.integers(-9, 10, (h, w, 3)), axis=1) % 256  # edges and ramps
        Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / "photo.png")
        got = read_image(tmp_path / "photo.png", Preprocess(256, 224, resample=resample))
        with Image.open(tmp_path / "photo.png") as im:
            expected = np.asarray(T.CenterCrop(224)(T.Resize(256, interpolation=mode)(im)))
        np.testing.assert_array_equal(got, expected)
    assert Preprocess.from_meta({"preprocess": Preprocess(resample=resample).to_meta()}) \
        == Preprocess(resample=resample)
