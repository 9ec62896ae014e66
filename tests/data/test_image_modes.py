"""Every image mode Pillow opens is converted exactly to 8-bit RGB or refused by name (issue 12)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invflow.data.folder import read_square_image


def save(tmp_path: Path, image: Image.Image, name: str) -> Path:
    path = tmp_path / name
    image.save(path)
    return path


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896], [65535, 1000, 60000], [128, 129, 65279]], dtype=np.uint16)
    path = save(tmp_path, Image.fromarray(values), "deep.png")
    pixels = read_square_image(path, None)
    want = np.round(values / 257).astype(np.uint8)
    assert pixels.shape == (3, 3, 3)
    np.testing.assert_array_equal(pixels[0], want)  # plain convert("RGB") gives 255 almost everywhere
    np.testing.assert_array_equal(pixels[1], want)


@pytest.mark.parametrize("mode", ["L", "RGB", "1", "P", "CMYK"])
def test_eight_bit_modes_convert_as_pillow_does(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    image = rgb.convert(mode)
    path = save(tmp_path, image, f"a.{'jpg' if mode == 'CMYK' else 'png'}")
    with Image.open(path) as reopened:
        want = np.asarray(reopened.convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(read_square_image(path, None), want)


def test_opaque_alpha_is_dropped_and_transparent_pixels_are_refused(tmp_path: Path) -> None:
    rgba = np.full((4, 4, 4), 200, dtype=np.uint8)
    rgba[..., 3] = 255
    opaque = save(tmp_path, Image.fromarray(rgba, "RGBA"), "opaque.png")
    np.testing.assert_array_equal(read_square_image(opaque, None), np.full((3, 4, 4), 200, dtype=np.uint8))
    rgba[0, 0, 3] = 0
    clear = save(tmp_path, Image.fromarray(rgba, "RGBA"), "clear.png")
    with pytest.raises(ValueError, match=r"clear.png has transparent pixels \(mode RGBA\)"):
        read_square_image(clear, None)


def test_float_image_is_refused_by_name(tmp_path: Path) -> None:
    path = save(tmp_path, Image.fromarray(np.ones((4, 4), dtype=np.float32)), "float.tiff")
    with pytest.raises(ValueError, match=r"float.tiff has mode F, which invflow does not convert"):
        read_square_image(path, None)


def test_a_palette_with_transparency_is_named_as_such(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.info["transparency"] = 1
    path = tmp_path / "palette.png"
    palette.save(path, transparency=1)
    expected = r"palette.png has transparent pixels \(mode P, a palette with transparency\)"
    with pytest.raises(ValueError, match=expected):
        read_square_image(path, None)


def test_an_exif_orientation_is_applied_as_a_viewer_shows_the_picture(tmp_path: Path) -> None:
    """A camera stores the picture sideways with Orientation = 6 ("rotate 90° clockwise to view");
    the pixels read are the upright picture, not the stored ones."""
    stored = np.zeros((4, 8, 3), dtype=np.uint8)  # 8 wide, 4 high as stored
    stored[:, :4] = 255  # left half white
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.png"
    image.save(path, exif=exif)
    with Image.open(path) as reopened:
        upright = np.asarray(reopened.transpose(Image.Transpose.ROTATE_270)).transpose(2, 0, 1)
    assert upright.shape == (3, 8, 4)
    np.testing.assert_array_equal(read_square_image(path, None), upright[:, 2:6, :])  # centre square
