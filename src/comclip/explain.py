"""A picture of a ComCLIP score: the image with each entity's box labelled by its phrase,
every sub-image with its similarity s_i and weight w_i, and the CLIP and ComCLIP scores."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from comclip.errors import ComclipError
from comclip.imaging.subimages import make_subimage
from comclip.jsonfile import written_whole
from comclip.results import ComCLIPResult

#: Box colours: none is the red or green that mark a FALSE or TRUE caption.
COLOURS = ["#4363d8", "#f58231", "#911eb4", "#0f8b8d", "#f032e6", "#9a6324", "#000075", "#808000"]
#: What the numbers under each sub-image mean, said on every figure.
PART_KEY = (
    "s: a sub-image's cosine with its phrase; w: its weight in the composed embedding; "
    "margin: how far the grounder's chosen region scored above the next"
)


def draw_explanation(result: ComCLIPResult, image: Image.Image, out: str | Path, method: str = "ComCLIP") -> Path:
    """Write the explanation figure of ``result`` (computed on ``image`` by ``method``) to
    ``out`` (PNG); the sub-images are drawn with the fill of the configuration that made it."""
    plt, rectangle = _pyplot()
    parts = result.parts
    columns = max(1, len(parts))
    fig = plt.figure(figsize=(max(6.0, 2.6 * columns), 6.4), dpi=100)
    grid = fig.add_gridspec(2, columns, height_ratios=[1.6, 1.0])
    top = fig.add_subplot(grid[0, :])
    _boxes(top, result, image, rectangle, fontsize=10)
    headline = f"CLIP cosine {result.clip:.4f}   {score_label(result, method)}"
    if result.fallback:
        headline += f"   ({result.fallback})"
    headline += "\nflags: " + (", ".join(result.flags) if result.flags else "none")
    top.set_title(f'"{result.text}"\n{headline}', fontsize=11)
    for n, part in enumerate(parts):
        ax = fig.add_subplot(grid[1, n])
        ax.imshow(make_subimage(image, part.boxes, result.config.subimage_fill))
        ax.set_axis_off()
        margin = "" if part.margin is None else f"  margin={part.margin:.3f}"
        ax.set_title(f"{part.kind}: {part.phrase}\ns={part.similarity:.3f}  w={part.weight:.3f}{margin}", fontsize=9)
    fig.text(0.5, 0.005, PART_KEY, ha="center", va="bottom", fontsize=8)
    return _save(fig, plt, out)


def score_label(result: ComCLIPResult, method: str, digits: int = 3) -> str:
    """What a composed score is, in words: the composed cosine alone, or it plus the evidence
    term the score mode adds and the geometric relation check's term, each named; never one
    word for two scales."""
    if result.composed is None or abs(result.score - result.composed) < 1e-12:
        return f"{method} score {result.score:.{digits}f} (composed cosine)"
    relations = result.relations_term
    evidence = result.score - result.composed - relations
    read_from = sorted({c[4] for c in result.spatial if c[3] is not None})  # boxes, pixels
    relations_name = f"relations ({' and '.join(read_from)})" if read_from else "relations"
    terms = "".join(
        f" {'+' if value >= 0 else '-'} {name} {abs(value):.{digits}f}"
        for name, value in (("evidence", evidence), (relations_name, relations))
        if abs(value) >= 1e-12
    )
    return f"{method} score {result.score:.{digits}f} = composed cosine {result.composed:.{digits}f}{terms}"


def telling_digits(values: list[float], least: int = 3, most: int = 6) -> int:
    """The fewest decimals (from ``least``) at which values that differ are printed apart, so
    a figure never shows two equal numbers and stars one of them."""
    for digits in range(least, most + 1):
        if len({f"{v:.{digits}f}" for v in values}) == len(set(values)):
            return digits
    return most


def draw_contrast(results: list[ComCLIPResult], image: Image.Image, out: str | Path, method: str, true: int = 0) -> Path:
    """One image against its captions side by side (``results``, one per caption; ``true`` is
    the right one): per caption, CLIP's cosine and the method's score, each method's choice
    starred, the grounded boxes, every sub-image with its ``s_i`` / ``w_i``, and the flags."""
    plt, rectangle = _pyplot()
    order = [true] + [k for k in range(len(results)) if k != true]  # the TRUE caption always on the left
    results, true = [results[k] for k in order], 0
    clip_digits = telling_digits([r.clip for r in results])
    score_digits = telling_digits([r.score for r in results])
    widths = [max(1, len(r.parts)) for r in results]
    fig = plt.figure(figsize=(max(9.0, 2.9 * sum(widths)), 7.6), dpi=100)
    grid = fig.add_gridspec(2, sum(widths), height_ratios=[1.7, 1.0])
    clip_pick = max(range(len(results)), key=lambda k: results[k].clip)
    method_pick = max(range(len(results)), key=lambda k: results[k].score)
    start = 0
    for k, (result, width) in enumerate(zip(results, widths)):
        top = fig.add_subplot(grid[0, start : start + width])
        _boxes(top, result, image, rectangle)
        marks = [f"* chosen by {name}" for name, pick in (("CLIP", clip_pick), (method, method_pick)) if pick == k]
        top.set_title(
            f'{"TRUE" if k == true else "FALSE"} caption: "{result.text}"\n'
            f"CLIP cosine {result.clip:.{clip_digits}f}\n{score_label(result, method, score_digits)}\n"
            f"flags: {', '.join(result.flags) or 'none'}   {'   '.join(marks)}",
            fontsize=9,
            color="#1a7f37" if k == true else "#b42318",
        )
        for n, part in enumerate(result.parts):
            ax = fig.add_subplot(grid[1, start + n])
            ax.imshow(make_subimage(image, part.boxes, result.config.subimage_fill))
            ax.set_axis_off()
            margin = "" if part.margin is None else f"  margin={part.margin:.3f}"
            ax.set_title(f"{part.kind}: {part.phrase}\ns_i={part.similarity:.3f}  w_i={part.weight:.3f}{margin}", fontsize=8)
        start += width
    verdict = {True: "the true one", False: "the false one"}
    fig.suptitle(
        f"CLIP prefers {verdict[clip_pick == true]}; {method} prefers {verdict[method_pick == true]}.\n"
        + PART_KEY.replace("s:", "s_i:").replace("w:", "w_i:"),
        fontsize=10,
    )
    return _save(fig, plt, out)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise ComclipError("explain figures need matplotlib: pip install 'comclip[plot]'") from None
    return plt, Rectangle


def _boxes(ax, result: ComCLIPResult, image: Image.Image, rectangle, fontsize: int = 9) -> None:
    """The image with each entity's boxes, labelled by its phrase (``(not grounded)`` where it
    took a fallback), outside the box so it never covers the shape it names (above it, or below
    where there is no room); entities grounded to one box get their labels stacked."""
    ax.imshow(image)
    ax.set_axis_off()
    labelled: list = []
    for n, part in enumerate(p for p in result.parts if p.kind == "entity"):
        colour = COLOURS[n % len(COLOURS)]
        for box in part.boxes:
            ax.add_patch(rectangle((box.x1, box.y1), box.width, box.height, fill=False, edgecolor=colour, linewidth=2.5))
        first = part.boxes[0]
        stacked = labelled.count(first)
        labelled.append(first)
        step = 0.07 * image.height  # one label's height, about
        above = first.y1 - 2 - stacked * step  # labels sit outside the box, never over the shape they name
        y, va = (above, "bottom") if above - step > 0 else (first.y2 + 2 + stacked * step, "top")
        ax.text(
            first.x1,
            y,
            part.phrase + (" (not grounded)" if part.flags else ""),
            color="white",
            fontsize=fontsize,
            va=va,
            bbox={"facecolor": colour, "alpha": 0.85, "pad": 2, "edgecolor": "none"},
        )


def _save(fig, plt, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        with written_whole(out) as file:
            fig.savefig(file, format="png")
    finally:
        plt.close(fig)
    return out


def draw_sheet(rows: list[tuple[str, list[tuple[Image.Image, str, ComCLIPResult | None]]]], out: str | Path) -> Path:
    """A contact sheet of search results: one row per (query, method) titled ``rows[k][0]``,
    its hits left to right, each ``(image, caption, result)`` with the result's grounded boxes
    (none for plain CLIP)."""
    plt, rectangle = _pyplot()
    columns = max(1, max((len(hits) for _, hits in rows), default=1))
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.4 * columns, 2.7 * len(rows)), dpi=100, squeeze=False)
    for (title, hits), line in zip(rows, axes):
        for ax in line:
            ax.set_axis_off()
        line[0].set_title(title, loc="left", fontsize=9)
        for ax, (image, caption, result) in zip(line, hits):
            if result is None:
                ax.imshow(image)
            else:
                _boxes(ax, result, image, rectangle, fontsize=7)
            ax.text(0.5, -0.04, caption, transform=ax.transAxes, ha="center", va="top", fontsize=7)
    return _save(fig, plt, out)
