"""Every kind of image file a user may pass is converted to upright RGB or rejected clearly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from comclip.errors import InputError
from comclip.imaging.files import expand_image_paths, load_image


def test_missing_image_is_named(tmp_path):
    with pytest.raises(InputError, match=r"image not found: .*nope\.jpg"):
        load_image(tmp_path / "nope.jpg")


def test_file_that_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(InputError, match=r"not an image file.*notes\.jpg"):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(full, quality=90)
    data = full.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"corrupt or truncated image: .*cut\.jpg"):
        load_image(cut)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="directory"):
        load_image(tmp_path)


@pytest.mark.parametrize(
    "mode,make,expected",
    [
        ("L", lambda: Image.new("L", (8, 8), 128), (128, 128, 128)),
        ("P", lambda: Image.new("RGB", (8, 8), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE), (10, 200, 30)),
        ("RGBA-opaque", lambda: Image.new("RGBA", (8, 8), (10, 20, 30, 255)), (10, 20, 30)),
        ("RGBA-transparent", lambda: Image.new("RGBA", (8, 8), (10, 20, 30, 0)), (255, 255, 255)),
        ("LA", lambda: Image.new("LA", (8, 8), (50, 255)), (50, 50, 50)),
        ("I;16", lambda: Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)), (255, 255, 255)),
        ("I;16-mid", lambda: Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)), (128, 128, 128)),
    ],
)
def test_png_modes_become_rgb(tmp_path, mode, make, expected):
    path = tmp_path / f"{mode}.png"
    img = make()
    img.save(path)
    loaded = load_image(path).image
    assert loaded.mode == "RGB"
    assert loaded.size == (8, 8)
    assert loaded.getpixel((3, 3)) == pytest.approx(expected, abs=2)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (16, 16), (200, 30, 30)).convert("CMYK").save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    loaded = load_image(path).image
    assert loaded.mode == "RGB"
    r, g, b = loaded.getpixel((8, 8))
    assert r > 150 and g < 80 and b < 80


def test_exif_rotated_jpeg_is_turned_upright(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))
    exif = img.getexif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.image.size == (20, 40)
    assert loaded.original_size == (20, 40)
    top, bottom = loaded.image.getpixel((10, 5)), loaded.image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 50  # the stored left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_pil_images_are_accepted_and_converted():
    loaded = load_image(Image.new("L", (30, 10), 7))
    assert loaded.image.mode == "RGB" and loaded.image.size == (30, 10)


def test_max_side_shrinks_preserving_aspect(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (400, 100), (1, 2, 3)).save(path)
    loaded = load_image(path, max_side=100)
    assert loaded.image.size == (100, 25)
    assert loaded.original_size == (400, 100)
    assert loaded.scale == pytest.approx(0.25)


def test_folder_expands_to_sorted_images(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand_image_paths([tmp_path])] == ["a.jpg", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no image files"):
        expand_image_paths([empty])


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    img = Image.new("RGB", (10000, 10000), (30, 120, 200))
    img.paste((250, 250, 0), (2000, 2000, 5000, 5000))
    img.save(path, quality=70)
    del img
    return path


def test_huge_image_decodes_with_bounded_memory(huge_jpeg):
    """A 10000x10000 JPEG is decoded at reduced scale: peak memory far below its 300 MB of pixels."""
    # VmHWM is this process's own peak; ru_maxrss would include the parent's peak from before exec.
    code = (
        "import re; from comclip.imaging.files import load_image; "
        f"l = load_image({str(huge_jpeg)!r}); "
        "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
        "print(l.image.size, l.original_size, hwm // 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    size, original, peak_mib = " ".join(out[:2]), " ".join(out[2:4]), int(out[4])
    assert size == "(2048, 2048)"
    assert original == "(10000, 10000)"
    assert peak_mib < 250, f"peak RSS {peak_mib} MiB while loading a 10000x10000 JPEG"


def test_huge_image_is_scored(huge_jpeg, tiny_model_dir, cli):
    code, out, err = cli("score", "--model", tiny_model_dir, "--json", huge_jpeg, "a yellow square")
    assert code == 0, err
    assert "huge.jpg" in out


def test_an_image_past_the_decompression_bomb_limit_is_decoded_at_reduced_scale(tmp_path, monkeypatch):
    """A 16000x12000 photo is over PIL's limit; the README promises it is decoded at reduced
    scale (a JPEG in its decoder, a PNG whole and then shrunk, up to comclip's own ceiling).
    The limits are lowered here so a small file stands for a huge one."""
    from PIL import Image as PILImage

    jpeg, png = tmp_path / "big.jpg", tmp_path / "big.png"
    picture = PILImage.new("RGB", (800, 600), (200, 30, 30))
    picture.save(jpeg, quality=90)
    picture.save(png)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 800 * 600 // 4)  # the file is twice the bomb limit
    loaded = load_image(jpeg, max_side=200)
    assert loaded.original_size == (800, 600) and max(loaded.image.size) == 200
    assert np.asarray(loaded.image)[100, 100].tolist() == pytest.approx([200, 30, 30], abs=6)
    whole = load_image(png, max_side=200)  # other formats: decoded whole, then shrunk
    assert whole.original_size == (800, 600) and whole.image.size == (200, 150)
    assert np.asarray(whole.image)[100, 100].tolist() == [200, 30, 30]
    monkeypatch.setattr("comclip.imaging.files.MAX_DECODE_PIXELS", 800 * 600 - 1)  # past comclip's own ceiling
    with pytest.raises(InputError, match="too large"):
        load_image(png, max_side=200)
    with pytest.raises(InputError, match="too large"):
        load_image(png, max_side=None)  # full size wanted: nothing can shrink it
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 200)  # even 1/8 scale is over the limit
    with pytest.raises(InputError, match="too large"):
        load_image(jpeg, max_side=50)
