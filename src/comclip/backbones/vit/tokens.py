"""Sub-images from a ViT's patch tokens (``--subimage tokens``): a region costs its area.

A filled sub-image is a full forward pass over an image that is black outside one box, so a
ViT spends as much work on the black patches as on the object. Here the ViT is given:

- its class token (where it has one: SigLIP's pools every token by attention instead, and the
  key bias below reaches that attention too);
- the patches the region touches, embedded from the filled view (the parent's view, resized
  and centre-cropped once, the fill's one colour outside the region in view pixels), each
  with its own position embedding;
- one token for all the patches wholly outside the region: the fill patch's embedding plus
  the mean of their position embeddings, with ``log k`` added to its attention logits as a
  key, so it weighs as much as the ``k`` tokens it stands for (proportional attention, as in
  token merging, Bolya et al., ICLR 2023).

So a box over a fifth of the view costs about a fifth of a pass (less: attention is quadratic
in the tokens). Were the outside tokens left apart it would be the fill drawn in view pixels
exactly; merged, they are an approximation, measured against the fill (on the sandbox
models, cosine 0.98 with black and 0.998 with the mean colour between a region's two
embeddings). A region that covers the whole view is the image itself.

Regions of different sizes share a batch in one of three ways (:data:`BATCHINGS`): ``group``
(sequences of equal length together, no padding), ``pad`` (taken in order of length, padded
to the longest, the pads masked out through the key bias) or ``like`` (padded, but a batch
ends before a sequence shorter than :data:`LIKE_LENGTH` of its longest, or where it would
hold more tokens than ``batch_size`` whole images: few pads and few small batches).
``benchmarks/throughput.py --batching`` measures each; :data:`BATCHING` is the fastest. A
backbone supports tokens by implementing the hooks of :class:`TokenEncoder`; it keeps its
parents' patches between calls in a :class:`TokenMemory`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np
import torch

from comclip.backbones.vit.views import ParentViews, PatchEncoder, TokenMemory, patch_split
from comclip.boxes import MaskedBox
from comclip.imaging.subimages import TokenRegion


class ViewGeometry(NamedTuple):
    """Where an encoder's square view lies in an image: the image point at the view's top left
    corner, view pixels per image pixel across and down, and the view's patches."""

    x0: float
    y0: float
    scale_x: float
    scale_y: float
    patch: int  # patch side in view pixels
    side: int  # patches per side


class TokenEncoder(PatchEncoder, Protocol):
    """What a backbone gives to encode regions from tokens (its ViT's pieces): its views'
    pixels and patch embeddings (:class:`PatchEncoder`), and these."""

    def view_geometry(self, size: tuple[int, int]) -> ViewGeometry:
        """Where the encoder's view lies in an image of ``size``."""
        ...

    def class_and_positions(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The class token ``[C]`` and the position embeddings ``[1 + P, C]`` (class first), or
        for a ViT without a class token (SigLIP's, pooled by attention) None and ``[P, C]``."""
        ...

    def encode_token_sequences(self, tokens: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """Unnormalised embeddings ``[N, D]`` (``[N, Q, D]`` for a multi-vector backbone) of token
        sequences ``[N, L, C]`` (starting with the class token where the ViT has one), each
        key's attention logits raised by ``key_bias`` ``[N, L]`` in every attention that reads
        them: the transformer, its pooling (BLIP-2: its Q-Former) and the projection."""
        ...


def centre_crop_geometry(size: tuple[int, int], crop: int, patch: int) -> ViewGeometry:
    """:meth:`TokenEncoder.view_geometry` of the usual CLIP view: the short side resized to
    ``crop`` and a centred square cut, in patches of ``patch`` view pixels."""
    width, height = size
    scale = crop / min(width, height)
    return ViewGeometry(
        (width * scale - crop) / 2 / scale, (height * scale - crop) / 2 / scale, scale, scale, patch, crop // patch
    )


def squash_geometry(size: tuple[int, int], side: int, patch: int) -> ViewGeometry:
    """:meth:`TokenEncoder.view_geometry` of a view that squashes the whole image to ``side`` x
    ``side`` (SigLIP's processor)."""
    width, height = size
    return ViewGeometry(0.0, 0.0, side / width, side / height, patch, side // patch)


def region_mask(boxes: Sequence, geometry: ViewGeometry) -> torch.Tensor:
    """Boolean ``[S, S]`` mask of the union of ``boxes`` (image coordinates) in view pixels."""
    return _view_masks([boxes], [geometry], geometry.patch * geometry.side)[0]


def patch_shares(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """``[P]``, row by row: the share of each patch's pixels inside the region."""
    return cut_shares(patch_split(mask, patch))


def cut_shares(cut: torch.Tensor) -> torch.Tensor:
    """``[..., P]``: the share of each patch's pixels inside the region, from its mask already
    cut into patches (``[..., P, patch, patch]``, :func:`patch_split`)."""
    return cut.flatten(-2).float().mean(dim=-1)


def touched_patches(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Boolean ``[P]``, row by row: the patches with any pixel of the region."""
    return patch_shares(mask, patch) > 0


#: Regions whose pixel masks are made at once (a ViT-B/32 view's mask is 50,176 booleans).
MASKS_AT_ONCE = 512


class Sequences:
    """Regions' token sequences (see the module docstring), kept compact: the class token
    (where the ViT has one), each region's touched patch rows one after another, and each
    region's token for the patches wholly outside it, with how many it stands for."""

    def __init__(
        self, start: torch.Tensor, rows: torch.Tensor, counts: torch.Tensor, outside: torch.Tensor, merged: torch.Tensor
    ):
        self.start, self.rows, self.counts, self.outside, self.merged = start, rows, counts, outside, merged
        self.offsets = torch.cumsum(counts, 0) - counts
        self.lengths = (len(start) + counts + (merged > 0)).tolist()

    def __len__(self) -> int:
        return len(self.counts)

    def sequence(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Region ``n``'s tokens ``[L, C]`` and key bias ``[L]``."""
        tokens, bias = self.batch([n])
        return tokens[0], bias[0]

    def batch(self, regions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences padded to the longest of them (``[B, L, C]``) and their key biases (``[B, L]``:
        0, ``log k`` for a merged token, minus infinity for the pads)."""
        chosen = torch.tensor(list(regions), device=self.rows.device)
        counts, merged = self.counts[chosen], self.merged[chosen]
        begin, most = len(self.start), int(counts.max())
        length = begin + most + int((merged > 0).any())
        tokens = self.rows.new_zeros(len(chosen), length, self.rows.shape[-1])
        bias = torch.full((len(chosen), length), float("-inf"), device=self.rows.device)
        tokens[:, :begin], bias[:, :begin] = self.start, 0.0
        place = torch.arange(most, device=self.rows.device)
        inside = place < counts[:, None]  # [B, most]
        source = (self.offsets[chosen][:, None] + place).clamp(max=max(len(self.rows) - 1, 0))
        if most:
            tokens[:, begin : begin + most] = torch.where(inside[..., None], self.rows[source], 0.0)
            bias[:, begin : begin + most] = torch.where(inside, 0.0, float("-inf"))
        has = torch.nonzero(merged > 0, as_tuple=True)[0]
        tokens[has, begin + counts[has]] = self.outside[chosen[has]]
        bias[has, begin + counts[has]] = torch.log(merged[has].double()).float()
        return tokens, bias


def region_sequences(encoder: TokenEncoder, regions: Sequence[TokenRegion], memory: TokenMemory | None = None) -> Sequences:
    """Each region's token sequence and key bias (see the module docstring): the class token
    (where the ViT has one), the patches the region touches (of the filled view: a patch it
    covers whole is the parent's, one it covers in part is embedded again, filled outside it,
    all such patches at once), and one token for all the patches wholly outside it, standing
    for ``k`` of them through a key bias of ``log k``. All made for many regions at once."""
    views = ParentViews(encoder, regions, memory)
    cls, positions = encoder.class_and_positions()
    start = cls[None] + positions[:1] if cls is not None else positions[:0]  # the class token, where the ViT has one
    patch_positions = positions[len(start) :]
    geometries = {size: encoder.view_geometry(size) for size in dict.fromkeys(r.size for r in regions)}
    ((patch, side),) = {(g.patch, g.side) for g in geometries.values()}  # the model's, whatever the image size
    views.prepare_fills([r.colour for r in regions], patch)
    rows, counts, outside, merged = [], [], [], []
    for first in range(0, len(regions), MASKS_AT_ONCE):
        some = regions[first : first + MASKS_AT_ONCE]
        added, touched = _patch_rows(encoder, views, some, [geometries[r.size] for r in some], patch_positions)
        rows.append(added)  # region by region, each region's patches row by row
        counts.append(touched.sum(dim=1))
        away = (~touched).to(patch_positions.dtype)
        merged.append(away.sum(dim=1).long())
        fills = torch.stack([views.fill(r.colour, patch)[1] for r in some])
        outside.append(fills + (away @ patch_positions) / away.sum(dim=1, keepdim=True).clamp(min=1))
    return Sequences(start, torch.cat(rows), torch.cat(counts), torch.cat(outside), torch.cat(merged))


def _patch_rows(
    encoder: TokenEncoder,
    views: ParentViews,
    regions: Sequence[TokenRegion],
    geometries: Sequence[ViewGeometry],
    positions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of the patches each region touches, with their position embeddings, region by
    region and row by row (``[T, C]``: the parent's patch, or where the region covers it in
    part, that patch filled outside it and embedded again), and which patches each region
    touches (``[R, P]``)."""
    patch, extent = geometries[0].patch, geometries[0].patch * geometries[0].side
    masks = _view_masks([r.boxes for r in regions], geometries, extent)
    cut = patch_split(masks, patch).movedim(0, 1).to(positions.device)  # [R, P, patch, patch]
    share = cut_shares(cut)
    touched = share > 0
    parents = torch.tensor([views.row[id(r.identity)] for r in regions], device=positions.device)
    region, where = torch.nonzero(touched, as_tuple=True)  # region by region, each row by row
    added = views.patches[parents[region], where] + positions[where]
    edge = torch.nonzero(share[region, where] < 1, as_tuple=True)[0]  # patches covered in part
    if len(edge):
        region, where = region[edge], where[edge]
        fills = torch.stack([views.fill(r.colour, patch)[0] for r in regions])
        view = views.cut(patch)[parents[region], where]
        pixels = torch.where(cut[region, where][:, None].to(view.device), view, fills[region])
        added[edge] = _embedded_patches(encoder, pixels) + positions[where]
    return added, touched


def _view_masks(boxes: Sequence[Sequence], geometries: Sequence[ViewGeometry], extent: int) -> torch.Tensor:
    """``[R, S, S]`` booleans: :func:`region_mask` of each region's boxes, all at once (the
    same rounding of each box side to view pixels). Each box adds one at its top left corner
    and its bottom right one and takes one away at the other two, so the sums over rows and
    columns count the boxes over each pixel: a region of many boxes (a mask's runs) costs
    its boxes, not its boxes times the view."""
    per_region = [[_corners(box) for box in some] for some in boxes]
    counts = [sum(len(c) for c in some) for some in per_region]
    corners = np.concatenate([c for some in per_region for c in some])
    origins = np.repeat([(g.x0, g.x0, g.y0, g.y0) for g in geometries], counts, axis=0).reshape(-1, 4)
    scales = np.repeat([(g.scale_x, g.scale_x, g.scale_y, g.scale_y) for g in geometries], counts, axis=0).reshape(-1, 4)
    sides = torch.round(torch.from_numpy((corners - origins) * scales).clamp(0, extent)).long()  # x1, x2, y1, y2
    x1, x2, y1, y2 = sides.unbind(dim=1)
    region = torch.repeat_interleave(torch.arange(len(boxes)), torch.tensor(counts))
    keep = (x2 > x1) & (y2 > y1)
    region, x1, x2, y1, y2 = region[keep], x1[keep], x2[keep], y1[keep], y2[keep]
    edges = torch.zeros(len(boxes), extent + 1, extent + 1, dtype=torch.int32)
    ones = torch.ones(len(region), dtype=torch.int32)
    for ys, xs, sign in ((y1, x1, 1), (y1, x2, -1), (y2, x1, -1), (y2, x2, 1)):
        edges.index_put_((region, ys, xs), sign * ones, accumulate=True)
    return edges.cumsum(dim=1).cumsum(dim=2)[:, :extent, :extent] > 0


def _corners(box) -> np.ndarray:
    """``[k, 4]``: ``x1, x2, y1, y2`` of the boxes whose union is ``box``'s region (a masked
    box's runs)."""
    if isinstance(box, MaskedBox):
        return box.run_corners
    return np.array([(box.x1, box.x2, box.y1, box.y2)], dtype=np.float64)


def _embedded_patches(encoder: TokenEncoder, patches: torch.Tensor, side: int = 16) -> torch.Tensor:
    """``[E, C]``: the embeddings of single patches ``[E, 3, p, p]``, tiled ``side`` x ``side``
    into views (the last one padded) so the patch embedding runs as on whole images: as a
    batch of thousands of one-patch images it ran several times slower."""
    if not len(patches):
        return patches.new_zeros(0, 1)  # nothing to put anywhere
    count, channels, patch = len(patches), patches.shape[1], patches.shape[-1]
    per_view = side * side
    views = -(-count // per_view)
    padded = torch.cat([patches, patches.new_zeros(views * per_view - count, channels, patch, patch)])
    tiled = padded.reshape(views, side, side, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)
    tiled = tiled.reshape(views, channels, side * patch, side * patch)
    rows = torch.cat([encoder.embed_patches(tiled[s : s + encoder.batch_size]) for s in range(0, views, encoder.batch_size)])
    return rows.reshape(views * per_view, -1)[:count]


def encode_regions(
    encoder: TokenEncoder, regions: Sequence[TokenRegion], batching: str | None = None, memory: TokenMemory | None = None
) -> torch.Tensor:
    """Unnormalised embeddings ``[len(regions), D]`` of regions, in batches made by
    ``batching`` (default :data:`BATCHING`) from the tokens of ``batch_size`` whole images;
    ``memory`` keeps the parents' patches for later calls."""
    sequences = region_sequences(encoder, regions, memory)
    budget = encoder.batch_size * len(encoder.class_and_positions()[1])
    out: list[torch.Tensor] = []
    order: list[int] = []
    for batch in BATCHINGS[batching or BATCHING](sequences.lengths, encoder.batch_size, budget):
        out.append(encoder.encode_token_sequences(*sequences.batch(batch)))
        order += batch
    rows = torch.cat(out)
    return rows[torch.argsort(torch.tensor(order, device=rows.device))]


def _grouped(lengths: list[int], size: int, budget: int) -> list[list[int]]:
    """Batches of ``size`` sequences of one length each."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for n, length in enumerate(lengths):
        by_length[length].append(n)
    return [group[s : s + size] for group in by_length.values() for s in range(0, len(group), size)]


def _by_length(lengths: list[int], size: int, budget: int) -> list[list[int]]:
    """Batches of ``size`` sequences taken in order of length, so each pads little."""
    order = sorted(range(len(lengths)), key=lambda n: lengths[n])
    return [order[s : s + size] for s in range(0, len(order), size)]


def _like_length(lengths: list[int], size: int, budget: int) -> list[list[int]]:
    """Batches of sequences taken longest first, each ending where its padded tokens would
    pass ``budget`` (a batch of short regions holds many: on a CPU a small model's batch
    costs about as much as its call) or before a sequence shorter than :data:`LIKE_LENGTH` of
    its first: few pads, few small batches."""
    order = sorted(range(len(lengths)), key=lambda n: -lengths[n])
    batches: list[list[int]] = []
    for n in order:
        longest = lengths[batches[-1][0]] if batches else 0
        if not batches or (len(batches[-1]) + 1) * longest > budget or lengths[n] < LIKE_LENGTH * longest:
            batches.append([])
        batches[-1].append(n)
    return batches


#: The shortest sequence a like-length batch takes, as a share of its longest.
LIKE_LENGTH = 0.75


#: How regions of different sizes share a batch: ``group`` (equal lengths only), ``pad`` or ``like``.
BATCHINGS = {"group": _grouped, "pad": _by_length, "like": _like_length}
BATCHING = "like"
