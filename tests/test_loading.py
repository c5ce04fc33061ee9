"""The image loader (a torch DataLoader underneath): worker processes decode exactly what the
main process would, in order, decode ahead of the model, return each bad file's error in its
place, survive a worker that dies, and fall back to the pipe where shared memory is short."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from comclip.errors import InputError
from comclip.imaging.files import load_image
from comclip.imaging.prefetch import ImageLoader, packed, received


class _KillsTheWorker:
    """Unpickling this in a worker process ends that process at once, as a decoder crash would."""

    def __reduce__(self):
        return (os._exit, (3,))

    def __str__(self):
        return "killer.jpg"


class _Touched(os.PathLike):
    """A path that leaves a marker file when a worker resolves it, so the test can see when
    a batch was decoded."""

    def __init__(self, path, marker):
        self.path, self.marker = str(path), str(marker)

    def __fspath__(self):
        open(self.marker, "w").close()
        return self.path


class _DiesWhenRead(os.PathLike):
    """A path whose reading ends the worker process, as a decoder crash on a hostile file would."""

    def __fspath__(self):
        os._exit(3)

    def __str__(self):
        return "dies.jpg"


@pytest.fixture
def files(tmp_path):
    paths = []
    for n, colour in enumerate([(200, 20, 20), (20, 200, 20), (20, 20, 200)]):
        path = tmp_path / f"{n}.jpg"
        Image.new("RGB", (64 + 8 * n, 48), colour).save(path, quality=90)
        paths.append(path)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return paths, tmp_path / "broken.jpg", tmp_path / "missing.png"


@pytest.mark.parametrize("workers", [0, 2])
def test_decodes_like_load_image_in_order_with_errors_in_place(files, workers):
    good, broken, missing = files
    sources = [good[0], broken, good[1], missing, Image.new("RGB", (5, 7), (1, 2, 3)), good[2]]
    with ImageLoader(workers) as loader:
        decoded = loader.load(sources)
    assert len(decoded) == len(sources)
    for source, item in zip(sources, decoded):
        if source in (broken, missing):
            assert isinstance(item, InputError) and str(source) in str(item)
            with pytest.raises(InputError, match=str(item).split(":")[0]):
                load_image(source)
        else:
            expected = load_image(source)
            assert item.source == expected.source and item.original_size == expected.original_size
            assert np.array_equal(np.asarray(item.image), np.asarray(expected.image))


def test_prefetch_keeps_order_and_decodes_the_next_batch_ahead(files, tmp_path):
    good, _, _ = files
    marker = tmp_path / "second-batch-decoded"
    batches = [[good[0]], [_Touched(good[1], marker), good[2]], [good[2]], []]
    with ImageLoader(workers=1) as loader:
        stream = loader.prefetch(batches, ahead=1)
        first = next(stream)
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:  # nobody has asked for batch 2 yet
            time.sleep(0.05)
        assert marker.exists()
        rest = list(stream)
    assert [[im.source for im in b] for b in [first, *rest]] == [[os.fspath(p) for p in b] for b in batches]


def test_a_dead_worker_fails_only_the_file_that_killed_it(files):
    good, _, _ = files
    with ImageLoader(workers=1) as loader:
        decoded = loader.load([good[0], _KillsTheWorker(), good[1]])
        assert isinstance(decoded[1], InputError) and "killer.jpg" in str(decoded[1])
        assert "worker died" in str(decoded[1])
        assert [im.source for im in (decoded[0], decoded[2])] == [str(good[0]), str(good[1])]
        again = loader.load(good)  # a fresh loader takes over
    assert [im.source for im in again] == [str(p) for p in good]


def test_a_worker_dying_while_the_model_works_fails_only_its_file(files):
    """The death is noticed by the loader, not raised into whatever the caller is doing."""
    good, _, _ = files
    with ImageLoader(workers=1) as loader:
        stream = loader.prefetch([[good[0]], [_DiesWhenRead(), good[1]], [good[2]]])
        first = next(stream)
        started = time.monotonic()
        while time.monotonic() - started < 3:  # the caller encodes while the worker dies
            sum(range(1000))
        second, third = list(stream)
    assert first[0].source == str(good[0]) and third[0].source == str(good[2])
    assert isinstance(second[0], InputError) and "worker died" in str(second[0]) and "dies.jpg" in str(second[0])
    assert second[1].source == str(good[1])


def test_abandoned_prefetch_leaves_no_shared_memory(files):
    good, _, _ = files
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else None
    with ImageLoader(workers=2) as loader:
        stream = loader.prefetch([good, good, good], ahead=2)
        next(stream)  # then the run stops: two batches were decoded ahead and never asked for
        stream.close()
    if before is not None:
        deadline = time.monotonic() + 10  # worker processes of earlier tests may still be exiting
        while (left := set(os.listdir("/dev/shm")) - before) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, left


def test_short_shared_memory_falls_back_to_the_pipe(files, monkeypatch):
    import torch

    good, broken, _ = files

    def no_space(self):
        raise RuntimeError("unable to write to file </torch_1>: No space left on device (28)")

    monkeypatch.setattr(torch.Tensor, "share_memory_", no_space)
    item = packed(good[0])
    assert isinstance(item.pixels, np.ndarray)  # sent through the pipe, not shared memory
    image = received(item)
    assert image.source == str(good[0]) and np.array_equal(np.asarray(image.image), np.asarray(load_image(good[0]).image))
    assert isinstance(received(packed(broken)), InputError)


def test_negative_worker_count_is_refused():
    with pytest.raises(InputError, match="workers"):
        ImageLoader(-1)
