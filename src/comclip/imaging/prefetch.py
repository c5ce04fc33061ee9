"""Decoding image files ahead of the model, through ``torch.utils.data.DataLoader``.

An evaluation alternates two kinds of work: decoding the next examples' files (JPEG
decoding, EXIF rotation, colour conversion, resizing) and encoding the current ones. With
``workers > 0`` an :class:`ImageLoader` hands the files to a ``DataLoader`` with that many
worker processes (started with ``spawn``), one batch of examples ahead of the model; the
pixels come back as tensors in shared memory, as PyTorch moves them, pinned for the GPU with
``pin_memory``.

A file that cannot be decoded comes back as the :class:`~comclip.errors.InputError` that
:func:`~comclip.imaging.files.load_image` would have raised, in its place in the batch, so each
failure stays attached to its example. A worker that dies (a decoder crash on a hostile
file, the out-of-memory killer) fails only the file that killed it: the batch it was on is
decoded again one file at a time, each in a loader of its own, and a fresh loader takes over
the batches after it. Images given as PIL objects (generated data) are never sent to a worker.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from comclip.errors import ComclipError, InputError
from comclip.imaging.files import DEFAULT_MAX_SIDE, ImageInput, LoadedImage, load_image


class _Pixels(NamedTuple):
    """A decoded image as it crosses from a worker: uint8 ``[H, W, 3]`` pixels and their origin.
    ``pixels`` is a tensor in shared memory, or a NumPy array sent through the pipe."""

    pixels: torch.Tensor | np.ndarray
    source: str
    original_size: tuple[int, int]


def decode(source: ImageInput, max_side: int | None = DEFAULT_MAX_SIDE) -> LoadedImage | InputError:
    """The decoded image, or the error saying why it could not be decoded (returned, so one
    bad file never cancels the rest of a batch)."""
    try:
        return load_image(source, max_side=max_side)
    except ComclipError as exc:
        return InputError(str(exc))


class _Files(Dataset):
    """Image sources by index, decoded in a worker into tensors (or their errors)."""

    def __init__(self, sources: Sequence[ImageInput], max_side: int | None):
        self.sources, self.max_side = list(sources), max_side

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, n: int) -> _Pixels | InputError:
        return packed(self.sources[n], self.max_side)


def packed(source: ImageInput, max_side: int | None = DEFAULT_MAX_SIDE) -> _Pixels | InputError:
    """What a worker sends back for one source: its pixels moved into shared memory (torch
    reserves the pages first), or, where shared memory is short (Docker gives /dev/shm 64 MB
    by default), kept in the message itself, through the pipe; or the decoding error."""
    item = decode(source, max_side)
    if isinstance(item, InputError):
        return item
    pixels = torch.from_numpy(np.array(item.image))
    try:
        pixels.share_memory_()
    except RuntimeError:
        return _Pixels(pixels.numpy(), item.source, item.original_size)
    return _Pixels(pixels, item.source, item.original_size)


def _as_list(items: list) -> list:
    return items


def received(item: _Pixels | InputError) -> LoadedImage | InputError:
    """The image a worker sent (see :func:`packed`), in this process."""
    if isinstance(item, InputError):
        return item
    pixels = item.pixels.numpy() if isinstance(item.pixels, torch.Tensor) else item.pixels
    # fromarray copies the pixels into Pillow's own storage: the shared block can then go
    width, height = item.original_size
    return LoadedImage(Image.fromarray(pixels), item.source, (int(width), int(height)))


class ImageLoader:
    """Decodes images in ``workers`` processes (0: in the calling process, when asked).

    :meth:`load` decodes one list; :meth:`prefetch` walks a sequence of lists, decoding the
    next ``ahead`` lists while the caller works on the current one. Results keep the order
    of their sources. Use as a context manager, as before: the workers of a prefetch end
    with it, or when it is exhausted or dropped.
    """

    def __init__(self, workers: int = 0, max_side: int | None = DEFAULT_MAX_SIDE, pin_memory: bool = False):
        if int(workers) < 0:
            raise InputError(f"the number of decoding workers must be 0 or more, got {workers}")
        self.workers, self.max_side, self.pin_memory = int(workers), max_side, pin_memory

    def __enter__(self) -> ImageLoader:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def load(self, sources: Sequence[ImageInput]) -> list[LoadedImage | InputError]:
        """Every source decoded, or the error that names it and what is wrong."""
        return next(self.prefetch([sources]))

    def prefetch(self, batches: Iterable[Sequence[ImageInput]], ahead: int = 1) -> Iterator[list[LoadedImage | InputError]]:
        """Decoded batches in order; up to ``ahead`` further batches decode meanwhile."""
        batches = [list(b) for b in batches]
        files = [[s for s in b if not isinstance(s, Image.Image)] for b in batches]
        if self.workers == 0 or not any(files):
            for batch in batches:
                yield [decode(s, self.max_side) for s in batch]
            return
        for batch, decoded in zip(batches, _in_thread(self._decode_files(files, ahead))):
            from_files = iter(decoded)
            yield [decode(s, self.max_side) if isinstance(s, Image.Image) else next(from_files) for s in batch]

    # --- internals -------------------------------------------------------------------------
    def _decode_files(self, batches: list[list], ahead: int) -> Generator[list, None, None]:
        """The file batches decoded by worker processes; where a worker dies, the batch it was
        on is decoded one file at a time and a fresh loader takes the rest."""
        done = 0
        while done < len(batches):
            try:
                for decoded in self._stream(batches[done:], ahead):
                    done += 1
                    yield decoded
            except RuntimeError as exc:
                if "DataLoader worker" not in str(exc):
                    raise
                yield [self._decode_alone(source) for source in batches[done]]
                done += 1

    def _stream(self, batches: list[list], ahead: int) -> Iterator[list]:
        spans, start = [], 0
        for batch in batches:
            spans.append(list(range(start, start + len(batch))))
            start += len(batch)
        loader = DataLoader(
            _Files([s for b in batches for s in b], self.max_side),
            batch_sampler=spans,
            num_workers=self.workers,
            collate_fn=_as_list,
            pin_memory=self.pin_memory,
            prefetch_factor=max(1, ahead),
            multiprocessing_context="spawn",
        )
        for decoded in loader:
            yield [received(item) for item in decoded]

    def _decode_alone(self, source: ImageInput) -> LoadedImage | InputError:
        """One image in a worker of its own: only the file that kills a worker fails again."""
        try:
            return next(self._stream([[source]], ahead=1))[0]
        except RuntimeError as exc:
            if "DataLoader worker" not in str(exc):
                raise
            return InputError(
                f"the decoding worker died while reading {source} (a decoder crash or the memory limit); the image was not scored"
            )


_END = object()


def _in_thread(items: Generator) -> Iterator:
    """``items`` produced by a thread of their own, one ahead of the caller.

    The DataLoader is iterated off the main thread on purpose: from the main thread, PyTorch
    installs a SIGCHLD handler that raises a worker's death wherever the main thread happens
    to be (in the middle of encoding), where nothing can recover. Off it, the death surfaces
    in the loader's own status check, inside :meth:`ImageLoader._decode_files`.
    """
    handoff: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the caller, raised there
            handoff.put(exc)
        finally:
            items.close()  # ends the loader's workers
            handoff.put(_END)

    thread = threading.Thread(target=produce, name="comclip-image-loader", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                handoff.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
