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
ends before a sequence shorter than :data:`LIKE_LENGTH` of its longest: few pads and few small
batches). ``benchmarks/throughput.py --batching`` measures each; :data:`BATCHING` is the
fastest. A backbone supports tokens by implementing the hooks of
:class:`TokenEncoder`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import torch
from PIL import Image

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


class TokenEncoder(Protocol):
    """What a backbone gives to encode regions from tokens (its ViT's pieces)."""

    batch_size: int

    def view_geometry(self, size: tuple[int, int]) -> ViewGeometry:
        """Where the encoder's view lies in an image of ``size``."""
        ...

    def pixel_values(self, images: Sequence) -> torch.Tensor:
        """The model's inputs ``[N, 3, S, S]`` for images (the view, normalised)."""
        ...

    def embed_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, P, C]``: the patch embeddings of views, before position embeddings."""
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
    extent = geometry.patch * geometry.side
    mask = torch.zeros((extent, extent), dtype=torch.bool)
    for box in boxes:
        x1, x2 = (int(round(min(max((v - geometry.x0) * geometry.scale_x, 0), extent))) for v in (box.x1, box.x2))
        y1, y2 = (int(round(min(max((v - geometry.y0) * geometry.scale_y, 0), extent))) for v in (box.y1, box.y2))
        mask[y1:y2, x1:x2] = True
    return mask


def patch_split(view: torch.Tensor, patch: int) -> torch.Tensor:
    """``[..., S, S]`` -> ``[P, ..., patch, patch]``: a view (or mask) cut into its patches, row by row."""
    side = view.shape[-1] // patch
    lead = view.shape[:-2]
    cut = view.reshape(*lead, side, patch, side, patch).movedim((-4, -2), (0, 1))
    return cut.reshape(side * side, *lead, patch, patch)


def patch_shares(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """``[P]``, row by row: the share of each patch's pixels inside the region."""
    return cut_shares(patch_split(mask, patch))


def cut_shares(cut: torch.Tensor) -> torch.Tensor:
    """``[P]``: the share of each patch's pixels inside the region, from its mask already cut
    into patches (``[P, patch, patch]``, :func:`patch_split`)."""
    return cut.flatten(1).float().mean(dim=1)


def touched_patches(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Boolean ``[P]``, row by row: the patches with any pixel of the region."""
    return patch_shares(mask, patch) > 0


class _Views:
    """Each parent image's view, cut into patches, and patch embeddings, made once for all its
    regions, and each fill colour's view pixel and patch embedding, made once for all the
    regions of that colour."""

    def __init__(self, encoder: TokenEncoder, regions: Sequence[TokenRegion]):
        self.encoder = encoder
        images = list({id(r.image): r.image for r in regions}.values())
        self.row = {id(image): n for n, image in enumerate(images)}
        size = encoder.batch_size
        self.pixels = torch.cat([encoder.pixel_values(images[s : s + size]) for s in range(0, len(images), size)])
        self.patches = torch.cat([encoder.embed_patches(self.pixels[s : s + size]) for s in range(0, len(images), size)])
        self._cut: dict[int, torch.Tensor] = {}
        self._fills: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def fill(self, colour: tuple[int, int, int], patch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fill colour's view pixel ``[3, 1, 1]`` (as the processor makes it) and its patch's
        embedding ``[C]`` (one patch of the colour: every patch of a one-colour view is alike)."""
        if colour not in self._fills:
            self.prepare_fills([colour], patch)
        return self._fills[colour]

    def prepare_fills(self, colours: Sequence[tuple[int, int, int]], patch: int) -> None:
        """:meth:`fill` of every colour not yet made, in batched calls: each image's background
        is a colour of its own, and one call per colour cost more than its regions' encoding."""
        todo = [colour for colour in dict.fromkeys(colours) if colour not in self._fills]
        side, size = self.pixels.shape[-1], self.encoder.batch_size
        for start in range(0, len(todo), size):
            some = todo[start : start + size]
            pixels = self.encoder.pixel_values([Image.new("RGB", (side, side), c) for c in some])[:, :, :1, :1]
            embedded = self.encoder.embed_patches(pixels.expand(-1, -1, patch, patch))[:, 0]
            self._fills.update((colour, (pixel, row)) for colour, pixel, row in zip(some, pixels, embedded))

    def edge_pixels(self, region: TokenRegion, mask_cut: torch.Tensor, edge: torch.Tensor, patch: int) -> torch.Tensor:
        """``[E, 3, patch, patch]``: the patches the region covers in part (``mask_cut``: its
        mask cut into patches), its fill colour outside it."""
        row = self.row[id(region.image)]
        if row not in self._cut:
            self._cut[row] = patch_split(self.pixels[row], patch)
        view = self._cut[row][edge]
        return torch.where(mask_cut[edge].to(view.device)[:, None], view, self.fill(region.colour, patch)[0])


def region_sequences(encoder: TokenEncoder, regions: Sequence[TokenRegion]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each region's token sequence and key bias (see the module docstring): the class token
    (where the ViT has one), the patches the region touches (of the filled view: a patch it covers whole is the
    parent's, one it covers in part is embedded again, filled outside it, all such patches
    at once), and one token for all the patches wholly outside it, standing for ``k`` of
    them through a key bias of ``log k``."""
    views = _Views(encoder, regions)
    cls, positions = encoder.class_and_positions()
    start = [cls[None] + positions[:1]] if cls is not None else []  # the class token, where the ViT has one
    patch_positions = positions[len(start) :]
    geometries = {size: encoder.view_geometry(size) for size in dict.fromkeys(r.size for r in regions)}
    for patch in {geometry.patch for geometry in geometries.values()}:
        views.prepare_fills([r.colour for r in regions if geometries[r.size].patch == patch], patch)
    layouts, edges = [], []
    for region in regions:
        geometry = geometries[region.size]
        cut = patch_split(region_mask(region.boxes, geometry), geometry.patch)
        share = cut_shares(cut).to(positions.device)
        touched, edge = share > 0, (share > 0) & (share < 1)
        layouts.append((touched, edge, geometry.patch))
        edges.append(views.edge_pixels(region, cut, edge, geometry.patch))
    edge_rows = _embedded_patches(encoder, torch.cat(edges)).split([len(e) for e in edges])
    out = []
    for region, (touched, edge, patch), edge_row in zip(regions, layouts, edge_rows):
        kept = views.patches[views.row[id(region.image)]]
        if len(edge_row):
            kept = kept.clone()
            kept[edge] = edge_row
        tokens = [*start, kept[touched] + patch_positions[touched]]
        bias = [0.0] * (len(start) + int(touched.sum()))
        outside = int((~touched).sum())
        if outside:
            tokens.append((views.fill(region.colour, patch)[1] + patch_positions[~touched].mean(dim=0))[None])
            bias.append(math.log(outside))
        out.append((torch.cat(tokens), torch.tensor(bias, device=positions.device)))
    return out


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


def encode_regions(encoder: TokenEncoder, regions: Sequence[TokenRegion], batching: str | None = None) -> torch.Tensor:
    """Unnormalised embeddings ``[len(regions), D]`` of regions, in batches of ``batch_size``
    made by ``batching`` (default :data:`BATCHING`)."""
    sequences = region_sequences(encoder, regions)
    out: list[torch.Tensor | None] = [None] * len(regions)
    for batch in BATCHINGS[batching or BATCHING](sequences, encoder.batch_size):
        tokens, bias = _padded([sequences[n] for n in batch])
        for n, row in zip(batch, encoder.encode_token_sequences(tokens, bias)):
            out[n] = row
    return torch.stack(out)  # type: ignore[arg-type]


def _grouped(sequences: list[tuple[torch.Tensor, torch.Tensor]], size: int) -> list[list[int]]:
    """Batches of sequences of one length each."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for n, (tokens, _) in enumerate(sequences):
        by_length[len(tokens)].append(n)
    return [group[s : s + size] for group in by_length.values() for s in range(0, len(group), size)]


def _by_length(sequences: list[tuple[torch.Tensor, torch.Tensor]], size: int) -> list[list[int]]:
    """Batches of sequences taken in order of length, so each pads little."""
    order = sorted(range(len(sequences)), key=lambda n: len(sequences[n][0]))
    return [order[s : s + size] for s in range(0, len(order), size)]


def _like_length(sequences: list[tuple[torch.Tensor, torch.Tensor]], size: int) -> list[list[int]]:
    """Batches of sequences taken longest first, each ending at ``size`` or before a sequence
    shorter than :data:`LIKE_LENGTH` of its first: few pads, few small batches."""
    order = sorted(range(len(sequences)), key=lambda n: -len(sequences[n][0]))
    batches: list[list[int]] = []
    for n in order:
        if not batches or len(batches[-1]) == size or len(sequences[n][0]) < LIKE_LENGTH * len(sequences[batches[-1][0]][0]):
            batches.append([])
        batches[-1].append(n)
    return batches


#: The shortest sequence a like-length batch takes, as a share of its longest.
LIKE_LENGTH = 0.75


def _padded(sequences: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: the sequences padded to the longest, each pad's key bias minus infinity."""
    length = max(len(tokens) for tokens, _ in sequences)
    tokens = torch.zeros(
        len(sequences), length, sequences[0][0].shape[-1], dtype=sequences[0][0].dtype, device=sequences[0][0].device
    )
    bias = torch.full((len(sequences), length), float("-inf"), device=tokens.device)
    for n, (row, row_bias) in enumerate(sequences):
        tokens[n, : len(row)], bias[n, : len(row)] = row, row_bias
    return tokens, bias


#: How regions of different sizes share a batch: ``group`` (equal lengths only), ``pad`` or ``like``.
BATCHINGS = {"group": _grouped, "pad": _by_length, "like": _like_length}
BATCHING = "like"
