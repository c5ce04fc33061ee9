"""Masks back into regions: a boolean mask's pixels as the boxes whose union it is, and as one
:class:`~comclip.boxes.MaskedBox` (the inverse of :func:`comclip.imaging.subimages.region_mask`),
for the proposals that mask candidates, the completions of depth, and the sandbox's true masks."""

from __future__ import annotations

import numpy as np

from comclip.boxes import Box, MaskedBox


def mask_region(mask: np.ndarray) -> MaskedBox | None:
    """The masked box of a boolean ``[height, width]`` mask's pixels (its runs:
    :func:`mask_runs`); None where it has none."""
    runs = [Box(*run) for run in mask_runs(mask)]
    return MaskedBox.of_runs(runs) if runs else None


def mask_runs(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``(x1, y1, x2, y2)`` boxes whose union is ``mask``: its rows' runs of pixels, a run
    taken on down while the rows below repeat it exactly (a square is one box)."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)  # a column of zeros each side
    padded[:, 1:-1] = mask
    edges = padded[:, 1:] - padded[:, :-1]
    rows, starts = np.nonzero(edges == 1)
    stops = np.nonzero(edges == -1)[1]
    runs: list[list[int]] = []
    open_runs: dict[tuple[int, int], int] = {}
    for y, a, b in zip(rows.tolist(), starts.tolist(), stops.tolist()):
        known = open_runs.get((a, b))
        if known is not None and runs[known][3] == y:
            runs[known][3] = y + 1
        else:
            open_runs[a, b] = len(runs)
            runs.append([a, y, b, y + 1])
    return [(a, b, c, d) for a, b, c, d in runs]
