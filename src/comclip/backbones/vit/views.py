"""What a batch of token regions shares (see :mod:`comclip.backbones.vit.tokens`): each parent
image's view and patch embeddings, and each fill colour's view pixel and patch embedding,
made once for all the regions that use them, and kept between calls in a
:class:`TokenMemory`."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import torch
from PIL import Image

from comclip.imaging.subimages import TokenRegion


class PatchEncoder(Protocol):
    """What a backbone gives to make its views and their patch embeddings."""

    batch_size: int

    def pixel_values(self, images: Sequence) -> torch.Tensor:
        """The model's inputs ``[N, 3, S, S]`` for images (the view, normalised)."""
        ...

    def embed_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, P, C]``: the patch embeddings of views, before position embeddings."""
        ...


class TokenMemory:
    """What regions of the same parents share between calls: each parent's view and patch
    embeddings (while the parent object lives, :data:`BYTES` in all) and each fill colour's
    view pixel and patch embedding (the last :data:`COLOURS`). A search index encodes an
    image's candidates, its sub-images and its unions in calls of their own, and each made
    these again. Like the grounder's memory, it assumes an image is not changed in place."""

    BYTES = 64 * 2**20
    COLOURS = 4096

    def __init__(self) -> None:
        self.parents: OrderedDict[int, tuple[weakref.ref, torch.Tensor, torch.Tensor]] = OrderedDict()
        self.fills: OrderedDict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.bytes = 0

    def parent(self, image) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The view and patch embeddings kept for ``image`` (this very object), or None."""
        kept = self.parents.get(id(image))
        if kept is None or kept[0]() is not image:
            return None
        self.parents.move_to_end(id(image))
        return kept[1], kept[2]

    def keep(self, image, pixels: torch.Tensor, patches: torch.Tensor) -> None:
        number = id(image)
        self._forget(number)
        self.parents[number] = (weakref.ref(image, lambda _: self._forget(number)), pixels, patches)
        self.bytes += _bytes(pixels, patches)
        while self.bytes > self.BYTES and len(self.parents) > 1:
            self._forget(next(iter(self.parents)))

    def keep_fill(self, colour: tuple[int, int, int], pixel: torch.Tensor, row: torch.Tensor) -> None:
        self.fills[colour] = (pixel, row)
        while len(self.fills) > self.COLOURS:
            self.fills.popitem(last=False)

    def _forget(self, number: int) -> None:
        kept = self.parents.pop(number, None)
        if kept is not None:
            self.bytes -= _bytes(kept[1], kept[2])


def _bytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class ParentViews:
    """Each parent image's view, cut into patches, and patch embeddings, made once for all its
    regions, and each fill colour's view pixel and patch embedding, made once for all the
    regions of that colour (and kept in ``memory`` for later calls, where given)."""

    def __init__(self, encoder: PatchEncoder, regions: Sequence[TokenRegion], memory: TokenMemory | None = None):
        self.encoder = encoder
        self.memory = memory or TokenMemory()
        parents = {id(r.identity): (r.identity, r.image) for r in regions}
        self.row = {number: n for n, number in enumerate(parents)}
        # This call's parents are held here, whatever the memory keeps of them for later calls.
        made = {number: self.memory.parent(key) for number, (key, _) in parents.items()}
        missing = [(number, key, image) for number, (key, image) in parents.items() if made[number] is None]
        size = encoder.batch_size
        for start in range(0, len(missing), size):
            some = missing[start : start + size]
            pixels = encoder.pixel_values([image for _, _, image in some])
            for (number, key, _), view, patches in zip(some, pixels, encoder.embed_patches(pixels)):
                made[number] = (view, patches)
                self.memory.keep(key, view, patches)
        self.pixels = torch.stack([made[number][0] for number in parents])  # type: ignore[index]
        self.patches = torch.stack([made[number][1] for number in parents])  # type: ignore[index]
        self._fills: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # this call's colours
        self._cut: torch.Tensor | None = None

    def fill(self, colour: tuple[int, int, int], patch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fill colour's view pixel ``[3, 1, 1]`` (as the processor makes it) and its patch's
        embedding ``[C]`` (one patch of the colour: every patch of a one-colour view is alike)."""
        if colour not in self._fills:
            self.prepare_fills([colour], patch)
        return self._fills[colour]

    def prepare_fills(self, colours: Sequence[tuple[int, int, int]], patch: int) -> None:
        """:meth:`fill` of every colour not yet made, in batched calls: each image's background
        is a colour of its own, and one call per colour cost more than its regions' encoding."""
        for colour in dict.fromkeys(colours):
            if colour not in self._fills and colour in self.memory.fills:
                self._fills[colour] = self.memory.fills[colour]
        todo = [colour for colour in dict.fromkeys(colours) if colour not in self._fills]
        side, size = self.pixels.shape[-1], self.encoder.batch_size
        for start in range(0, len(todo), side * side):
            some = todo[start : start + side * side]
            pixels = self._palette(some, side)
            if pixels is None:  # an encoder that resamples a view-sized image: one image a colour
                made = [self._one_colour(some[s : s + size], side) for s in range(0, len(some), size)]
                pixels = torch.cat(made)
            for first in range(0, len(some), size):
                kept = pixels[first : first + size]
                embedded = self.encoder.embed_patches(kept.expand(-1, -1, patch, patch))[:, 0]
                for colour, pixel, row in zip(some[first : first + size], kept, embedded):
                    self._fills[colour] = (pixel, row)
                    self.memory.keep_fill(colour, pixel, row)

    def _one_colour(self, colours: Sequence[tuple[int, int, int]], side: int) -> torch.Tensor:
        """``[N, 3, 1, 1]``: each colour's view pixel, from a view-sized image of that colour."""
        return self.encoder.pixel_values([Image.new("RGB", (side, side), c) for c in colours])[:, :, :1, :1]

    def _palette(self, colours: Sequence[tuple[int, int, int]], side: int) -> torch.Tensor | None:
        """``[N, 3, 1, 1]``: the colours' view pixels from one view-sized image holding them
        pixel by pixel (cycled to fill it). An encoder whose processor keeps a view-sized image
        as it is (no resampling; rescaling and normalising work pixel by pixel) makes each the
        same as a whole image of that colour, which the first colour checks; None otherwise."""
        palette = Image.new("RGB", (side, side))
        palette.putdata([colours[n % len(colours)] for n in range(side * side)])
        pixels = self.encoder.pixel_values([palette])[0].flatten(1)[:, : len(colours)].T[:, :, None, None]
        return pixels if torch.equal(pixels[:1], self._one_colour(colours[:1], side)) else None

    def cut(self, patch: int) -> torch.Tensor:
        """``[images, P, 3, patch, patch]``: every parent's view cut into its patches, row by row
        (made once a call)."""
        if self._cut is None:
            self._cut = patch_split(self.pixels, patch).movedim(0, 1)
        return self._cut


def patch_split(view: torch.Tensor, patch: int) -> torch.Tensor:
    """``[..., S, S]`` -> ``[P, ..., patch, patch]``: a view (or mask) cut into its patches, row by row."""
    side = view.shape[-1] // patch
    lead = view.shape[:-2]
    cut = view.reshape(*lead, side, patch, side, patch).movedim((-4, -2), (0, 1))
    return cut.reshape(side * side, *lead, patch, patch)
