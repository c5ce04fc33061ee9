"""The parts of a foreground segment: where one connected region of foreground holds several
objects, boxes for each of them.

Segment proposals (:func:`comclip.grounding.proposals.segment_proposals`) box connected
regions that stand out from the background, so objects that touch or overlap become one box:
a shape drawn over another, a distractor beside a named object, a thin line leaving an
object. Classic proposal methods (selective search) start from an over-segmentation by colour
and group it again; this module does the same, in three steps on each segment:

1. **colour regions**: connected pixels whose neighbours differ by less than :data:`TOLERANCE`
   (RGB distance, after a 3x3 median that removes noise but keeps edges); regions without a
   core (nothing left after one erosion) are edges and dropped. Regions of like colour (mean
   colours within :data:`MERGE`) are one group: an object cut in two by another drawn over it.
2. **colour parts**: where a segment holds two or more groups, every pixel of the segment is
   given to the group (or the background) whose mean colour is nearest, which gives back
   the thin tips the median took; each group's pixels are a part, and so is each piece of a
   group cut in two. Where it holds one group whose box is smaller than the segment's by more
   than :data:`SHRINK` pixels (a thin line the median removed), that group, grown back by
   :data:`REGROW` pixels inside the segment (the median took the shape's tips too), is a part.
3. **narrow joins**: the segment and each part are eroded by 1 and 2 pixels; where that cuts
   them apart, each piece grown back is a part (objects of one colour that touch); where one
   pixel's erosion and growth give back a much smaller box, that is a part (a line left it),
   grown back the same way.
4. **distance peaks**: where the segment or a part holds two or more distinct maxima of its
   distance to its own edge (objects of one colour that touch along a wide join or overlap,
   which no narrow join separates: the centres of the objects' largest inscribed discs), the
   mask's pixels are shared out among the maxima, each to the disc it lies in most (its
   power distance: squared distance to the centre less the squared radius), and each share
   is a part (the usual seeds for splitting touching blobs, as a watershed's are; a star's
   arms go with its own centre, not a wider neighbour's).

Nothing here knows what an object is: it reads colours and shapes of regions, so it runs on
any image where objects contrast (diagrams, products, the sandbox). A segment of one colour,
without narrow joins or thin lines, gives no parts: its proposals stay its own box.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Bumped whenever the parts a segment gives change: grounders that use them name it in their
#: description, so cached rankings and search indexes of other parts are never mixed in.
VERSION = 6
#: Neighbouring pixels closer than this (RGB distance, after the median) are one colour region.
TOLERANCE = 18.0
#: Colour regions of a segment whose mean colours are closer than this are one group.
MERGE = 40.0
#: A single colour group is a part of its own where its box is smaller than the segment's by
#: more than this many pixels on some side (the median keeps a shape's edges within 2).
SHRINK = 4
#: Erosions (in pixels) that may cut touching objects of one colour apart.
EROSIONS = (1, 2)
#: Pieces an erosion leaves count only where they hold at least this share of the mask (a
#: star's tips and a line's crumbs are not objects of their own).
MIN_SHARE = 0.2
#: A colour part holds at least this share of its segment: the texture of a photo's segment
#: makes many small colour regions, which are not objects (an object half hidden behind one
#: four times its size still is one).
MIN_PART = 0.05
#: How far a part that a thin line left is grown back into its segment (see :func:`_regrown`).
REGROW = 2
#: Pieces of a regrown group smaller than this many pixels are noise.
MIN_PIECE = 4
#: 4-connectivity, scipy.ndimage's default, given once (it is made again on every call otherwise).
CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
#: 8-connectivity: a plateau of equal distance maxima is one peak.
SQUARE = np.ones((3, 3), dtype=bool)
#: The same within each plane of a stack of masks only (:mod:`comclip.grounding.segment_stacks`).
PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
PLANE_CROSS[1] = CROSS
PLANE_SQUARE = np.zeros((3, 3, 3), dtype=bool)
PLANE_SQUARE[1] = SQUARE
#: A distance peak lies at least this many pixels inside its mask: smaller discs are a pointer's
#: head or a line's width, not an object (development seed 100: no peak in a pointer scene).
PEAK_LEAST = 3.0
#: A peak is a maximum of the distance within this window (pixels, square).
PEAK_WINDOW = 5
#: Peaks count as distinct objects only where each lies farther from every stronger one than
#: this times the larger of their two distances: the maxima a noisy edge makes inside one
#: shape's disc are one object (the classic scenes' segments give none; 1.0 split 21-31% of
#: their images). 1.2 (was 1.5): a shape reaching 1.2-1.5 radii out of a larger one of its
#: colour is boxed apart too (development seed 100, named crowded objects with a candidate
#: 97.2 -> 98.8% on object swaps, 95.2-98.5 -> 96.0-99.5% on the other crowded tasks).
PEAK_APART = 1.2


def segment_parts(pixels: np.ndarray, segment: np.ndarray, background: np.ndarray, core: float) -> Iterator[np.ndarray]:
    """Masks of the parts of ``segment`` (a boolean mask) in ``pixels`` (``[H, W, 3]`` RGB,
    float32), colour parts at least :data:`MIN_PART` of it; ``background``: the background
    colour; ``core``: the least number of pixels a colour region keeps after one erosion."""
    least = MIN_PART * segment.sum()
    groups = _colour_groups(pixels, segment, core)
    parts = [part for part in _colour_parts(pixels, segment, background, groups) if part.sum() >= least]
    yield from parts
    for mask in [segment, *parts]:
        yield from _narrow_joins(mask)
        yield from _distance_peaks(mask)


def _colour_groups(pixels: np.ndarray, segment: np.ndarray, core: float) -> list[list[np.ndarray]]:
    """The segment's colour regions (step 1), grouped by mean colour: ``[[region mask, ...], ...]``."""

    bounds = mask_bounds(segment)
    y1, y2, x1, x2 = bounds
    window = _median3(pixels[y1:y2, x1:x2])
    labels = _similar_regions(window, segment[y1:y2, x1:x2])
    return grouped_regions(window, labels, np.flatnonzero(_core_sizes(labels) >= core), segment, bounds)


def grouped_regions(
    window: np.ndarray, labels: np.ndarray, cored: np.ndarray, segment: np.ndarray, bounds: tuple[int, int, int, int]
) -> list[list[np.ndarray]]:
    """The cored regions (``cored``: their labels in ``labels``, over the segment's box
    ``bounds``, whose median colours are ``window``) grouped by mean colour, each region a
    mask of the segment's size."""
    y1, y2, x1, x2 = bounds
    groups: list[tuple[np.ndarray, list[np.ndarray]]] = []
    for label in cored:
        region = labels == label
        full = np.zeros_like(segment)
        full[y1:y2, x1:x2] = region
        if len(cored) == 1:  # one region, one group (the usual case): its colour is never read
            return [[full]]
        colour = window[region].mean(axis=0)
        same = next((g for g in groups if np.linalg.norm(g[0] - colour) < MERGE), None)
        if same is None:
            groups.append((colour, [full]))
        else:
            same[1].append(full)
    return [regions for _, regions in groups]


def _similar_regions(window: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Labels (1..n, 0 outside) of the connected regions of ``inside`` whose 4-neighbours
    differ by less than :data:`TOLERANCE`: the components of that graph, found as the
    4-connected components of a grid twice as fine whose even cells are the pixels and whose
    odd cells between two pixels are the edges (one C pass of ``ndimage.label``)."""
    from scipy import ndimage

    *planes, height, width = inside.shape
    grid = np.zeros((*planes, 2 * height - 1, 2 * width - 1), dtype=bool)
    grid[..., ::2, ::2] = inside
    across = window[..., :, 1:, :] - window[..., :, :-1, :]
    down = window[..., 1:, :, :] - window[..., :-1, :, :]
    grid[..., ::2, 1::2] = (lengths(across) < TOLERANCE) & inside[..., :, 1:] & inside[..., :, :-1]
    grid[..., 1::2, ::2] = (lengths(down) < TOLERANCE) & inside[..., 1:, :] & inside[..., :-1, :]
    labels, _ = ndimage.label(grid, CROSS if not planes else PLANE_CROSS)
    # Every region holds pixels (an edge cell is set only between two pixels inside), so the
    # pixels' labels are already 1..n.
    return labels[..., ::2, ::2]


def lengths(vectors: np.ndarray) -> np.ndarray:
    """The Euclidean length of each vector along the last axis: ``np.linalg.norm``'s own
    arithmetic (the squares added in order), without its per-call set-up, and with the few
    components added as whole arrays (numpy reduces a short last axis slowly: 100 us for a
    64 x 64 image's colour distances, against 22 this way)."""
    squares = vectors * vectors
    total = squares[..., 0]
    for component in range(1, squares.shape[-1]):
        total = total + squares[..., component]
    return np.sqrt(total)


def _core_sizes(labels: np.ndarray) -> np.ndarray:
    """Per label (index 0: none), how many of its pixels have all four neighbours in it too:
    its size after one erosion, for every label at once."""
    padded = _padded(labels)
    inner = padded[..., 1:-1, 1:-1]
    core = (inner > 0) & (inner == padded[..., :-2, 1:-1]) & (inner == padded[..., 2:, 1:-1])
    core &= (inner == padded[..., 1:-1, :-2]) & (inner == padded[..., 1:-1, 2:])
    sizes = np.bincount(labels[core], minlength=labels.max() + 1)
    sizes[0] = 0
    return sizes


def _colour_parts(
    pixels: np.ndarray, segment: np.ndarray, background: np.ndarray, groups: list[list[np.ndarray]]
) -> Iterator[np.ndarray]:
    """Step 2: the segment's pixels given to the nearest group colour, each group's and each
    of its pieces' masks; or one group's own mask where it is much smaller than the segment."""
    from scipy import ndimage

    if len(groups) == 1:
        union = _union(groups[0])
        if _much_smaller(union, segment):
            yield _regrown(union, segment)
        return
    if not groups:
        return
    unions = [_union(regions) for regions in groups]
    colours = np.stack([background] + [pixels[union].mean(axis=0) for union in unions])
    near = _dilated(segment, 1)
    nearest = np.full(segment.shape, -1)
    nearest[near] = lengths(pixels[near][:, None, :] - colours).argmin(axis=-1)
    for number, (regions, union) in enumerate(zip(groups, unions), start=1):
        pieces, count = ndimage.label(nearest == number, CROSS)
        sizes = ndimage.sum(np.ones_like(pieces), pieces, range(1, count + 1))
        grown = np.isin(pieces, 1 + np.flatnonzero(sizes >= MIN_PIECE))
        yield grown if grown.any() else union
        if len(regions) > 1:
            yield from regions


def _union(regions: list[np.ndarray]) -> np.ndarray:
    """The pixels of any of a group's region masks (the one mask itself where it holds one)."""
    return regions[0] if len(regions) == 1 else np.logical_or.reduce(regions)


def _narrow_joins(mask: np.ndarray) -> Iterator[np.ndarray]:
    """Step 3: where an erosion cuts ``mask`` into pieces of at least :data:`MIN_SHARE` of it
    (smaller ones are crumbs of a line or a tip), each such piece grown back inside it; where
    one pixel's erosion leaves a single such piece whose box is smaller than the mask's by more
    than :data:`SHRINK` (a line one or two pixels wide left it), that piece."""
    from scipy import ndimage

    eroded, least = mask, MIN_SHARE * mask.sum()
    for depth in range(1, max(EROSIONS) + 1):
        eroded = _eroded(eroded)  # ``depth`` erosions of the mask
        if depth not in EROSIONS:
            continue
        cores, count = ndimage.label(eroded, CROSS)
        if count < 2 and depth != 1:
            continue  # one piece or none: nothing cut apart, and no line to leave out
        pieces = [_dilated(eroded if count == 1 else cores == number, depth) & mask for number in range(1, count + 1)]
        pieces = [piece for piece in pieces if piece.sum() >= least]
        if len(pieces) > 1:
            yield from pieces
        elif len(pieces) == 1 and depth == 1 and _much_smaller(pieces[0], mask):
            yield _regrown(pieces[0], mask)


def _distance_peaks(mask: np.ndarray) -> Iterator[np.ndarray]:
    """Step 4: where ``mask`` holds two or more distinct maxima of its distance to its edge
    (see :data:`PEAK_LEAST`, :data:`PEAK_APART`), the pixels nearest each one by power distance
    (development seeds 100 and 101: named crowded objects with a candidate 96.5-97.2 ->
    97.2-97.8%, fewer candidates; a square 1.3 times each disc, cut to the mask, before)."""
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(_padded(mask))[1:-1, 1:-1]
    tops = (distance >= PEAK_LEAST) & (distance == _window_maximum(distance, PEAK_WINDOW))
    ys, xs = np.nonzero(tops)
    if not len(ys) or np.hypot(np.ptp(ys), np.ptp(xs)) <= PEAK_APART * PEAK_LEAST:
        return  # no two maxima far enough apart to be two objects (the usual case: one shape)
    labels, count = ndimage.label(tops, SQUARE)
    if count < 2:
        return
    numbers = range(1, count + 1)  # a plateau's pixels are all maxima, so all of one distance
    radii = ndimage.maximum(distance, labels, numbers)
    yield from peak_shares(mask, list(zip(radii, *zip(*ndimage.center_of_mass(tops, labels, numbers)))))


def peak_shares(mask: np.ndarray, peaks: list[tuple[float, float, float]]) -> Iterator[np.ndarray]:
    """The pixels of ``mask`` nearest each distinct peak (radius, y, x) by power distance,
    where two or more peaks are distinct: a weaker peak inside a stronger one's disc (times
    :data:`PEAK_APART`) is the same object."""
    found = sorted(peaks, key=lambda peak: -peak[0])
    kept: list[tuple[float, float, float]] = []
    for radius, y, x in found:  # the strongest first: a weaker peak inside its disc is the same object
        if all(np.hypot(y - ky, x - kx) > PEAK_APART * max(radius, kr) for kr, ky, kx in kept):
            kept.append((radius, y, x))
    if len(kept) < 2:
        return
    ys, xs = np.nonzero(mask)
    radii, centre_y, centre_x = (np.asarray(column, dtype=np.float64)[:, None] for column in zip(*kept))
    nearest = ((ys - centre_y) ** 2 + (xs - centre_x) ** 2 - radii**2).argmin(axis=0)  # ties: the stronger
    for number in range(len(kept)):
        share = np.zeros_like(mask)
        share[ys[nearest == number], xs[nearest == number]] = True
        if share.any():
            yield share


def _regrown(part: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A part that a thin line left, grown back by :data:`REGROW` pixels inside ``mask``: the
    median and the erosion that cut the line off also took the shape's tips and corners (its
    box lay up to 2 pixels inside the shape's, so its masked sub-image cut them off); the line
    gets back no more than that stub."""
    return _dilated(part, REGROW) & mask


def _much_smaller(inner: np.ndarray, outer: np.ndarray) -> bool:
    """Whether ``inner``'s box lies more than :data:`SHRINK` pixels inside ``outer``'s on some side."""
    return bool(np.abs(np.subtract(mask_bounds(inner), mask_bounds(outer))).max() > SHRINK)


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(y1, y2, x1, x2)``: the rows and columns ``mask`` covers, ends exclusive (``mask``
    holds at least one pixel)."""
    rows, columns = np.logical_or.reduce(mask, axis=1), np.logical_or.reduce(mask, axis=0)  # np.any's wrapper cost more
    return (
        int(rows.argmax()),
        len(rows) - int(rows[::-1].argmax()),
        int(columns.argmax()),
        len(columns) - int(columns[::-1].argmax()),
    )


# The morphology below is scipy.ndimage's (``median_filter`` of size (3, 3, 1) with mode
# "nearest"; ``binary_erosion`` and ``binary_dilation`` with their default cross and border
# value 0), written as shifted copies:
# the masks here are small, and scipy's per-call set-up cost more than the work (a third of
# the proposals' time). The tests compare them. Each works on the last two axes (and the
# median on the two before the channels): leading axes are a stack of planes, each on its own
# (:mod:`comclip.grounding.segment_stacks`).


def _median3(window: np.ndarray) -> np.ndarray:
    """Each pixel's median over its 3x3 neighbourhood, per channel, the edge repeated outside:
    each column of three sorted once, then the median of nine is the median of the largest of
    the three columns' least values, the median of their middle ones and the least of their
    largest (an identity of the 3x3 median: 18 array operations, a sorting network needs 38)."""
    return median_of_edged(edged(window))


def median_of_edged(padded: np.ndarray) -> np.ndarray:
    """:func:`_median3` of windows already :func:`edged` (``[..., H + 2, W + 2, C]`` to
    ``[..., H, W, C]``: a stack of them at once)."""
    above, here, below = padded[..., :-2, :, :], padded[..., 1:-1, :, :], padded[..., 2:, :, :]
    low, high = np.minimum(above, here), np.maximum(above, here)
    middle = np.maximum(low, np.minimum(high, below))  # each column's three: least, middle, largest
    low, high = np.minimum(low, below), np.maximum(high, below)
    lows = np.maximum(np.maximum(low[..., :-2, :], low[..., 1:-1, :]), low[..., 2:, :])
    highs = np.minimum(np.minimum(high[..., :-2, :], high[..., 1:-1, :]), high[..., 2:, :])
    return _middle(_middle(middle[..., :-2, :], middle[..., 1:-1, :], middle[..., 2:, :]), lows, highs)


def edged(window: np.ndarray) -> np.ndarray:
    """``window`` with its edge rows and columns repeated once outside it (what the 3x3 median reads)."""
    height, width = window.shape[:2]
    padded = np.empty((height + 2, width + 2, *window.shape[2:]), dtype=window.dtype)
    padded[1:-1, 1:-1] = window
    padded[0], padded[-1] = padded[1], padded[-2]  # the edge rows repeated, then the edge columns
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    return padded


def _middle(first: np.ndarray, second: np.ndarray, third: np.ndarray) -> np.ndarray:
    """The median of three arrays, element by element."""
    return np.maximum(np.minimum(first, second), np.minimum(np.maximum(first, second), third))


def _window_maximum(values: np.ndarray, size: int) -> np.ndarray:
    """Each value's maximum over the ``size`` x ``size`` square centred on it (``size`` odd),
    within the array: ``ndimage.maximum_filter`` wherever the square lies inside it (where it
    does not, scipy reflects the edge; the distance peaks read only values at least
    :data:`PEAK_LEAST` from the edge, whose squares lie inside)."""
    *planes, height, width = values.shape
    reach = size // 2
    padded = np.full((*planes, height + 2 * reach, width + 2 * reach), -np.inf)
    padded[..., reach:-reach, reach:-reach] = values
    across = padded[..., :, :width].copy()
    for shift in range(1, size):
        np.maximum(across, padded[..., :, shift : shift + width], out=across)
    down = across[..., :height, :].copy()
    for shift in range(1, size):
        np.maximum(down, across[..., shift : shift + height, :], out=down)
    return down


def _eroded(mask: np.ndarray) -> np.ndarray:
    """``mask`` less every pixel with a 4-neighbour outside it (or outside the array)."""
    padded = _padded(mask)
    return mask & padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1] & padded[..., 1:-1, :-2] & padded[..., 1:-1, 2:]


def _dilated(mask: np.ndarray, times: int) -> np.ndarray:
    """``mask`` grown ``times`` times by its 4-neighbours (within the array)."""
    for _ in range(times):
        padded = _padded(mask)
        mask = mask | padded[..., :-2, 1:-1] | padded[..., 2:, 1:-1] | padded[..., 1:-1, :-2] | padded[..., 1:-1, 2:]
    return mask


def _padded(array: np.ndarray) -> np.ndarray:
    """``array`` (a mask or labels) with a border of zeros (False) one pixel wide (``np.pad``,
    whose set-up cost more)."""
    *planes, height, width = array.shape
    padded = np.zeros((*planes, height + 2, width + 2), dtype=array.dtype)
    padded[..., 1:-1, 1:-1] = array
    return padded
