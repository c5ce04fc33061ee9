"""Decoding image files in worker processes, ahead of the model that needs them.

An evaluation alternates two kinds of work: decoding the next examples' files (JPEG
decoding, EXIF rotation, colour conversion, resizing) and encoding the current ones. With
``workers > 0`` an :class:`ImageLoader` decodes in that many separate processes while the
calling process encodes, as a ``torch.utils.data.DataLoader`` with ``num_workers`` does.

A file that cannot be decoded comes back as the :class:`~comclip.errors.InputError` that
:func:`~comclip.images.load_image` would have raised, in its place in the batch, so each
failure stays attached to its example. A worker that dies (a decoder crash on a hostile
file, the out-of-memory killer) fails only the file that killed it: the images its pool
held are decoded again, each in a process of its own, and a new pool takes over.
Images given as PIL objects (generated data) are not sent to a worker at all.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import shared_memory
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from .errors import ComclipError, InputError
from .images import DEFAULT_MAX_SIDE, ImageInput, LoadedImage, load_image


def _decode(source: ImageInput, max_side: int | None) -> LoadedImage | InputError:
    """The decoded image, or the error saying why it could not be decoded (returned, so one
    bad file never cancels the rest of a batch)."""
    try:
        return load_image(source, max_side=max_side)
    except ComclipError as exc:
        return InputError(str(exc))


def _decode_all(sources: list[ImageInput], max_side: int | None) -> tuple[str | None, list]:
    """Decode a slice in a worker. The pixels go back through one shared-memory block, not
    the result pipe: pickling photos through a pipe costs about as much as decoding them."""
    decoded = [_decode(source, max_side) for source in sources]
    arrays = [np.asarray(item.image) for item in decoded if isinstance(item, LoadedImage)]
    block = _shared_block(sum(a.nbytes for a in arrays)) if arrays else None
    if block is None:
        return None, decoded  # through the pipe after all
    entries, offset = [], 0
    for item in decoded:
        if isinstance(item, LoadedImage):
            pixels = np.asarray(item.image)
            np.ndarray(pixels.shape, np.uint8, block.buf, offset)[...] = pixels
            entries.append((offset, pixels.shape, item.source, item.original_size))
            offset += pixels.nbytes
        else:
            entries.append(item)
    block.close()  # the receiving process unlinks it
    return block.name, entries


def _shared_block(size: int) -> shared_memory.SharedMemory | None:
    """A shared-memory block of ``size`` bytes with its pages reserved, or None where shared
    memory is short (Docker gives /dev/shm 64 MB by default): writing to a block that tmpfs
    cannot back kills the process with SIGBUS, so the space is claimed before any write."""
    try:
        block = shared_memory.SharedMemory(create=True, size=size)
    except OSError:
        return None
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(block._fd, 0, size)
    except OSError:
        block.close()
        block.unlink()
        return None
    return block


def _receive(result: tuple[str | None, list]) -> list[LoadedImage | InputError]:
    name, entries = result
    if name is None:
        return entries
    block = shared_memory.SharedMemory(name=name)
    try:
        # fromarray copies RGB pixels into Pillow's own storage, so nothing points into the block
        return [entry if isinstance(entry, InputError) else
                LoadedImage(Image.fromarray(np.ndarray(entry[1], np.uint8, block.buf, entry[0])), entry[2], entry[3])
                for entry in entries]
    finally:
        block.close()
        block.unlink()


class ImageLoader:
    """Decodes images in ``workers`` processes (0: in the calling process, when asked).

    Use as a context manager so the worker processes end with it. :meth:`load` decodes one
    list; :meth:`prefetch` walks a sequence of lists, decoding the next ``ahead`` lists while
    the caller works on the current one. Results keep the order of their sources.
    """

    def __init__(self, workers: int = 0, max_side: int | None = DEFAULT_MAX_SIDE):
        if int(workers) < 0:
            raise InputError(f"the number of decoding workers must be 0 or more, got {workers}")
        self.workers = int(workers)
        self.max_side = max_side
        self._pool: ProcessPoolExecutor | None = None
        self._outstanding: set[Future] = set()

    def __enter__(self) -> "ImageLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the workers; results decoded ahead but never asked for (a run stopped by an
        error or Ctrl-C) have their shared-memory blocks freed."""
        for future in self._outstanding:
            if not future.cancel():
                try:
                    _receive(future.result())
                except Exception:  # a broken pool: nothing was left in shared memory
                    pass
        self._outstanding.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def load(self, sources: Sequence[ImageInput]) -> list[LoadedImage | InputError]:
        """Every source decoded, or the error that names it and what is wrong."""
        return self._collect(sources, self._submit(sources))

    def prefetch(self, batches: Iterable[Sequence[ImageInput]], ahead: int = 1) -> Iterator[list[LoadedImage | InputError]]:
        """Decoded batches in order; up to ``ahead`` further batches are decoding meanwhile."""
        pending: deque = deque()
        for sources in batches:
            pending.append((sources, self._submit(sources)))
            if len(pending) > ahead:
                yield self._collect(*pending.popleft())
        while pending:
            yield self._collect(*pending.popleft())

    # --- internals -------------------------------------------------------------------------
    def _submit(self, sources: Sequence[ImageInput]) -> list[tuple[list[int], Future | None]]:
        """The files split into one slice per worker, each slice one task (few round trips to
        the workers, whose results reach this process only between its own Python steps);
        in-memory images and ``workers=0`` make a slice that the caller decodes itself."""
        if self.workers == 0:
            return [(list(range(len(sources))), None)] if sources else []
        files = [n for n, source in enumerate(sources) if not isinstance(source, Image.Image)]
        local = [n for n, source in enumerate(sources) if isinstance(source, Image.Image)]
        tasks: list[tuple[list[int], Future | None]] = [(local, None)] if local else []
        if not files:
            return tasks
        size = -(-len(files) // self.workers)
        for start in range(0, len(files), size):
            part = files[start : start + size]
            try:
                future = self._executor().submit(_decode_all, [sources[n] for n in part], self.max_side)
            except BrokenProcessPool:  # a worker died since the last batch: start over
                self._discard_pool()
                future = self._executor().submit(_decode_all, [sources[n] for n in part], self.max_side)
            self._outstanding.add(future)
            tasks.append((part, future))
        return tasks

    def _collect(self, sources: Sequence[ImageInput], tasks) -> list[LoadedImage | InputError]:
        results: list = [None] * len(sources)
        for part, future in tasks:
            if future is None:
                decoded = [_decode(sources[n], self.max_side) for n in part]
            else:
                self._outstanding.discard(future)
                try:
                    decoded = _receive(future.result())
                except BrokenProcessPool:
                    self._discard_pool()  # the next submission starts a fresh pool
                    decoded = [self._decode_alone(sources[n]) for n in part]
            for n, item in zip(part, decoded):
                results[n] = item
        return results

    def _decode_alone(self, source: ImageInput) -> LoadedImage | InputError:
        """Retry one image whose pool broke, in a process of its own: a dead worker takes every
        task in its pool down with it, but only the file that killed it fails again."""
        solo = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return solo.submit(_decode, source, self.max_side).result()
        except BrokenProcessPool:
            return InputError(f"the decoding worker died while reading {source} "
                              "(a decoder crash or the memory limit); the image was not scored")
        finally:
            solo.shutdown(wait=True)

    def _discard_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the calling process holds a model and OpenMP threads.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool
