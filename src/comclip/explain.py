"""A picture of a ComCLIP score: the image with each entity's box labelled by its phrase,
every sub-image with its similarity s_i and weight w_i, and the CLIP and ComCLIP scores."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from .errors import ComclipError
from .pipeline import ComCLIPResult
from .subimages import make_subimage

COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"]


def draw_explanation(result: ComCLIPResult, image: Image.Image, out: str | Path) -> Path:
    """Write the explanation figure of ``result`` (computed on ``image``) to ``out`` (PNG); the
    sub-images are drawn with the fill of the configuration that made the result."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise ComclipError("explain figures need matplotlib: pip install 'comclip[plot]'") from None

    parts = result.parts
    columns = max(1, len(parts))
    fig = plt.figure(figsize=(max(6.0, 2.6 * columns), 6.4), dpi=100)
    grid = fig.add_gridspec(2, columns, height_ratios=[1.6, 1.0])
    top = fig.add_subplot(grid[0, :])
    top.imshow(image)
    top.set_axis_off()
    entity_parts = [p for p in parts if p.kind == "entity"]
    labelled: list = []
    for n, part in enumerate(entity_parts):
        colour = COLOURS[n % len(COLOURS)]
        for box in part.boxes:
            top.add_patch(Rectangle((box.x1, box.y1), box.width, box.height, fill=False, edgecolor=colour, linewidth=2.5))
        first = part.boxes[0]
        label = part.phrase + (" (not grounded)" if part.flags else "")
        stacked = labelled.count(first)  # entities grounded to the same box: labels one under another
        labelled.append(first)
        top.text(
            first.x1 + 3,
            first.y1 + 3 + stacked * 0.06 * image.height,
            label,
            color="white",
            fontsize=10,
            va="top",
            bbox={"facecolor": colour, "alpha": 0.85, "pad": 2, "edgecolor": "none"},
        )
    headline = f"CLIP cosine {result.clip:.4f}   ComCLIP score {result.score:.4f}"
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
