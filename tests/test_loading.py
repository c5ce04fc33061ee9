"""The image loader: worker processes decode exactly what the main process would, in order,
return each bad file's error in its place, and survive a worker that dies."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from comclip.errors import InputError
from comclip.images import load_image
from comclip.loading import ImageLoader


class _KillsTheWorker:
    """Unpickling this in a worker process ends that process at once, as a decoder crash would."""

    def __reduce__(self):
        return (os._exit, (3,))

    def __str__(self):
        return "killer.jpg"


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


def test_prefetch_keeps_order_and_decodes_the_next_batch_ahead(files):
    good, _, _ = files
    batches = [[good[0]], [good[1], good[2]], [good[2]], []]
    submitted = []

    class Watched(ImageLoader):
        def _submit(self, sources):
            submitted.append(list(sources))
            return super()._submit(sources)

    with Watched(workers=1) as loader:
        stream = loader.prefetch(batches, ahead=1)
        first = next(stream)
        assert submitted == batches[:2]  # the second batch was sent off before the first came back
        rest = list(stream)
    assert [[im.source for im in b] for b in [first, *rest]] == [[str(p) for p in b] for b in batches]


def test_a_dead_worker_fails_only_the_file_that_killed_it(files):
    good, _, _ = files
    with ImageLoader(workers=1) as loader:
        decoded = loader.load([good[0], _KillsTheWorker(), good[1]])
        assert isinstance(decoded[1], InputError) and "killer.jpg" in str(decoded[1])
        assert "worker died" in str(decoded[1])
        assert [im.source for im in (decoded[0], decoded[2])] == [str(good[0]), str(good[1])]
        again = loader.load(good)  # a fresh pool takes over
    assert [im.source for im in again] == [str(p) for p in good]


def test_abandoned_prefetch_leaves_no_shared_memory(files):
    good, _, _ = files
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else None
    with ImageLoader(workers=2) as loader:
        stream = loader.prefetch([good, good, good], ahead=2)
        next(stream)  # then the run stops: two batches were decoded ahead and never asked for
    if before is not None:
        assert set(os.listdir("/dev/shm")) <= before


def test_short_shared_memory_falls_back_to_the_pipe(files, monkeypatch):
    from comclip import loading

    good, broken, _ = files

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loading.shared_memory, "SharedMemory", no_space)
    name, entries = loading._decode_all([good[0], broken], None)
    assert name is None
    received = loading._receive((name, entries))
    assert received[0].source == str(good[0]) and isinstance(received[1], InputError)
    monkeypatch.undo()
    if hasattr(os, "posix_fallocate"):  # a block created but not backed by memory is given back
        before = set(os.listdir("/dev/shm"))
        monkeypatch.setattr(loading.os, "posix_fallocate", no_space)
        assert loading._decode_all([good[0]], None)[0] is None
        assert set(os.listdir("/dev/shm")) <= before


def test_negative_worker_count_is_refused():
    with pytest.raises(InputError, match="workers"):
        ImageLoader(-1)
