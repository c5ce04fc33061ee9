"""Loading user images into RGB PIL images that every backbone can take.

Real collections hold every kind of file: palette GIFs, RGBA and 16-bit PNGs, CMYK and
EXIF-rotated JPEGs, truncated downloads and huge scans. Each is either converted to the
upright 8-bit RGB picture a person would see, or rejected with an :class:`InputError`
that names the file and the problem, so one bad file never turns into a silently wrong
score.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from comclip.errors import InputError

#: Images are decoded at no more than this many pixels on their longer side. CLIP-like
#: backbones see 224-448 px; keeping a bounded copy keeps memory bounded for 10k x 10k
#: scans while leaving ample resolution for grounding small objects.
DEFAULT_MAX_SIDE = 2048
#: Files PIL's decompression-bomb check refuses (over about 179 million pixels) are still read:
#: JPEGs at reduced scale in the decoder, other formats whole and then shrunk at once, up to
#: this many pixels (a 24,000 x 24,000 scan, about 1.7 GB as RGB while it decodes); beyond it
#: a file is refused as a possible decompression bomb.
MAX_DECODE_PIXELS = 24_000 * 24_000
EXIF_ORIENTATION = 0x0112

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

ImageInput = str | os.PathLike | Image.Image


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image ready for encoding, with where it came from and how it was resized."""

    image: Image.Image
    source: str
    original_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Factor from original pixel coordinates to this image's coordinates."""
        return self.image.width / self.original_size[0]

    @cached_property
    def digest(self) -> str:
        """The pixels' digest (:func:`comclip.digests.image_digest`), computed once per decoded
        image: every cache entry derived from the image (its embedding, its sub-images', its
        grounding) starts from it."""
        from comclip.digests import image_digest

        return image_digest(self.image)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, compositing transparency onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        return Image.fromarray(arr.astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def load_image(source: ImageInput | LoadedImage, max_side: int | None = DEFAULT_MAX_SIDE) -> LoadedImage:
    """Open ``source`` (a path or a PIL image) as an upright RGB image; a :class:`LoadedImage`
    is returned as it is (it was loaded, and keeps the digest it may have computed).

    The image is rotated by its EXIF orientation, converted to 8-bit RGB, and shrunk so its
    longer side is at most ``max_side`` (``None`` keeps full size). JPEGs are decoded at
    reduced scale directly, so memory stays bounded for very large files.
    """
    if isinstance(source, LoadedImage):
        return source
    if isinstance(source, Image.Image):
        # exif_transpose copies even when nothing turns; skip it for unrotated images (crops,
        # generated scenes) so encoding thousands of regions does not double their memory.
        rotated = source.getexif().get(EXIF_ORIENTATION, 1) not in (1, None)
        img = (ImageOps.exif_transpose(source) or source) if rotated else source
        name = getattr(source, "filename", "") or "<PIL image>"
        return _finish(img, name, img.size, max_side)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(not_an_image_input(source))
    path = Path(source)
    name = str(path)
    if not path.exists():
        raise InputError(f"image not found: {name}")
    if path.is_dir():
        raise InputError(f"expected an image file but got a directory: {name}")
    if not path.is_file():  # a FIFO, socket or device would block or stream for ever
        raise InputError(f"not a regular file: {name}")
    native: list[str] = []  # what libtiff printed while decoding, for the error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # PIL's "Corrupt EXIF data": the error, if any, says it
            try:
                img = Image.open(path)
            except Image.DecompressionBombError:
                img = _large_image(path, max_side)  # the bomb check fires before draft can reduce it
            original_size = img.size
            if max_side is not None and img.format == "JPEG" and max(img.size) > max_side:
                img.draft("RGB", (max_side, max_side))
                _check_pixels(img.size, name)
            with _native_stderr(native) if img.format == "TIFF" else nullcontext():
                img.load()
            img = _shrink_large(img, max_side)
    except UnidentifiedImageError:
        raise InputError(f"not an image file (format not recognised): {name}") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"image too large to decode safely: {name} ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        said = f": {' '.join(native)}" if native else ""
        raise InputError(f"corrupt or truncated image: {name} ({exc}{said})") from None
    img = ImageOps.exif_transpose(img) or img
    return _finish(img, name, _upright_size(img, original_size), max_side)


@contextmanager
def _native_stderr(said: list[str]) -> Iterator[None]:
    """File descriptor 2 sent to a temporary file while C code runs (libtiff prints its own
    messages there, before comclip's one-line error); what it wrote is put in ``said``."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep clean
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said.extend(line.strip() for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip())


def _large_image(path: Path, max_side: int | None) -> Image.Image:
    """A file too large for PIL's decompression-bomb check, opened without it: a JPEG so that
    :meth:`draft` decodes it at reduced scale (1/2 to 1/8 in the decoder itself), any other
    format if it holds at most :data:`MAX_DECODE_PIXELS`. Without ``max_side`` (full size
    wanted) or beyond that, it stays refused."""
    from PIL import JpegImagePlugin

    with open(path, "rb") as handle:
        is_jpeg = handle.read(3) == b"\xff\xd8\xff"
    if max_side is not None and is_jpeg:
        return JpegImagePlugin.JpegImageFile(str(path))
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        img = Image.open(path)  # reads the header only
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if max_side is None or img.width * img.height > MAX_DECODE_PIXELS:
        img.close()
        raise Image.DecompressionBombError(
            f"{img.width}x{img.height} is more than the {MAX_DECODE_PIXELS:,} pixels comclip decodes"
        )
    return img


def _shrink_large(img: Image.Image, max_side: int | None) -> Image.Image:
    """An image decoded whole past PIL's bomb limit, reduced at once by an integer factor (a
    box filter) so that the copies made next (RGB conversion, resizing) stay small."""
    limit = Image.MAX_IMAGE_PIXELS
    if max_side is None or limit is None or img.width * img.height <= 2 * limit:
        return img
    factor = max(img.size) // max_side
    if factor < 2:
        return img
    if img.mode not in ("1", "L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"):
        img = _to_rgb(img)
    return img.reduce(factor)


def _check_pixels(size: tuple[int, int], name: str) -> None:
    """The decompression-bomb limit, applied to what will actually be decoded."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > 2 * limit:
        raise Image.DecompressionBombError(f"{name} is {size[0]}x{size[1]} even decoded at 1/8 scale")


def _upright_size(img: Image.Image, original_size: tuple[int, int]) -> tuple[int, int]:
    """The original size in the same orientation as ``img`` (after EXIF rotation)."""
    same = (img.width >= img.height) == (original_size[0] >= original_size[1])
    return original_size if same else (original_size[1], original_size[0])


def _finish(img: Image.Image, name: str, original_size: tuple[int, int], max_side: int | None) -> LoadedImage:
    if img.width < 1 or img.height < 1:  # a PIL image can be 0 x 0; no model can encode it
        raise InputError(f"image {name} has no pixels ({img.width} x {img.height})")
    img = _to_rgb(img)
    if max_side is not None and max(img.size) > max_side:
        factor = max_side / max(img.size)
        new_size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
        img = img.resize(new_size, Image.Resampling.BICUBIC)
    return LoadedImage(image=img, source=name, original_size=original_size)


def expand_image_paths(sources: Iterable[ImageInput]) -> list[ImageInput]:
    """Replace every directory in ``sources`` by the image files it holds, sorted by name."""
    expanded: list[ImageInput] = []
    for source in sources:
        if isinstance(source, Image.Image):
            expanded.append(source)
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise InputError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in directory: {path}")
            expanded.extend(files)
        else:
            expanded.append(source)
    return expanded


def not_an_image_input(source: object) -> str:
    """Why ``source`` cannot be an image input, and what would be."""
    hint = " (PIL.Image.fromarray(array) makes one of an HxWx3 uint8 array)" if hasattr(source, "__array__") else ""
    return f"an image is a file path or a PIL image, not {type(source).__name__}{hint}"


def load_images(
    images: Sequence[ImageInput | LoadedImage] | ImageInput | LoadedImage, max_side: int | None = DEFAULT_MAX_SIDE
) -> list[LoadedImage]:
    """The images, decoded (see :func:`load_image`); one image given alone (a path is a
    string, not a sequence of one-letter paths) is a list of one; none is an error."""
    if isinstance(images, (str, os.PathLike, Image.Image, LoadedImage)):
        images = [images]
    elif hasattr(images, "__array__"):  # an array is one picture (or a batch), never a list of images
        raise InputError(not_an_image_input(images))
    loaded = [load_image(image, max_side=max_side) for image in images]
    if not loaded:
        raise InputError("no images given")
    return loaded
