"""Class-agnostic region proposals: where might an object be, before asking what it is.

- :func:`grid_windows`: a multi-scale grid of windows (blind to content, always available).
- :func:`segment_proposals`: boxes of connected regions that stand out from the background
  colour, after light smoothing; the first step of classic proposal methods such as selective
  search. Cheap (one pass over a small copy of the image) and tight where objects contrast
  with their surroundings, as in the sandbox's scenes and many product or diagram images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from comclip.grounding.base import Box

#: (window side as a fraction of the image side, stride as a fraction of the image side).
DEFAULT_SCALES = ((1.0, 1.0), (0.75, 0.25), (0.5, 0.25), (1 / 3, 1 / 6))
PROPOSALS = ("grid", "segments", "grid+segments")


def grid_windows(width: int, height: int, scales=DEFAULT_SCALES) -> list[Box]:
    """Windows covering the image at several scales, each window inside the image."""
    boxes: list[Box] = []
    for side, stride in scales:
        w, h = width * side, height * side
        steps = max(1, round((1 - side) / stride) + 1) if side < 1 else 1  # per axis
        for iy in range(steps):
            for ix in range(steps):
                x1 = 0.0 if steps == 1 else (width - w) * ix / (steps - 1)
                y1 = 0.0 if steps == 1 else (height - h) * iy / (steps - 1)
                boxes.append(Box(x1, y1, x1 + w, y1 + h))
    return list(dict.fromkeys(Box(round(b.x1, 3), round(b.y1, 3), round(b.x2, 3), round(b.y2, 3)) for b in boxes))


def segment_proposals(
    image: Image.Image, max_side: int = 128, threshold: float = 40.0, min_area: float = 0.002, max_area: float = 0.5
) -> list[Box]:
    """Boxes (in ``image`` pixels) of connected regions whose colour differs from the background.

    The background colour is the median of the border pixels; a pixel is foreground when its
    smoothed colour is more than ``threshold`` away from it (RGB distance). Regions smaller
    than ``min_area`` or larger than ``max_area`` of the image are dropped.
    """
    from scipy import ndimage

    scale = min(1.0, max_side / max(image.size))
    small = (
        image
        if scale == 1.0
        else image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR)
    )
    pixels = ndimage.uniform_filter(np.asarray(small, dtype=np.float32), size=(3, 3, 1), mode="nearest")
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    foreground = np.linalg.norm(pixels - background, axis=-1) > threshold
    labels, count = ndimage.label(foreground)
    total = foreground.size
    boxes = []
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        area = int((labels[region] == index).sum())
        if not (min_area * total <= area <= max_area * total):
            continue
        ys, xs = region
        boxes.append(
            Box(xs.start / scale, ys.start / scale, min(image.width, xs.stop / scale), min(image.height, ys.stop / scale))
        )
    return boxes


def propose(image: Image.Image, kind: str = "grid", scales=DEFAULT_SCALES) -> list[Box]:
    """Candidate boxes of the given kind (see :data:`PROPOSALS`), without duplicates."""
    boxes: list[Box] = []
    if "segments" in kind:
        boxes += segment_proposals(image)
    if "grid" in kind:
        boxes += grid_windows(image.width, image.height, scales)
    return list(dict.fromkeys(boxes))
