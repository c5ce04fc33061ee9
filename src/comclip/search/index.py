"""``Index``: build, open, extend and search an image collection (see :mod:`comclip.search`)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from comclip.backbones import DEFAULT_MODEL, Backbone, create_backbone
from comclip.backbones.cached import CachedEncoder, encoder
from comclip.boxes import Box, stored_box
from comclip.config import PipelineConfig, runnable_by
from comclip.errors import InputError
from comclip.eval.runs.process_group import barrier, join
from comclip.grounding.pool import GrounderPool
from comclip.methods import METHODS, method_configs
from comclip.search.build import DEFAULT_PART_SIZE, DTYPES, extend, fill, identity, locked, run
from comclip.search.layout import FAISS_FILE, folder_bytes, open_parts, read_manifest, skipped_records
from comclip.search.results import SearchResult
from comclip.search.side import DEFAULT_UNION_CAP, StoredSide, grounder_key
from comclip.search.sources import expand_sources
from comclip.search.stored_images import DeferredImage, IndexCache, IndexedImage, parse_sub_key
from comclip.world import World

#: The methods an index serves unless told otherwise: those ``comclip search`` uses unless
#: told otherwise. The paper's ``comclip`` is one ``--method`` away; its filled sub-images cost
#: a forward pass each, which made a default build of the sandbox model 15x plain CLIP's
#: encoding instead of about 3x (``benchmarks/search.py --images 2000``).
DEFAULT_METHODS = ("clip", "comclip-plus")
#: Lists an inverted-file FAISS index (IVF...) visits per query.
NPROBE = 32
#: Below this many query vectors, FAISS searches on one thread.
FEW_QUERIES = 8
#: Indexed images kept ready (their images, candidates and sub-image tables) between queries.
MEMORY = 8192


class Index:
    """An image collection's index: one FAISS index of global embeddings and, per image, the
    stored side every method it serves reads (see :mod:`comclip.search.side`).

    >>> index = Index.build(["photos/"], "photos.index", model="openai/clip-vit-base-patch32")
    >>> index = Index.open("photos.index")
    >>> index.search(["a red car next to a blue bike"], top=5, candidates=100, method="comclip-plus")
    """

    def __init__(self, folder: str | os.PathLike, backbone: Backbone | CachedEncoder) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if not self.manifest.get("complete"):
            raise InputError(
                f"{self.folder}: the index's build did not finish; run comclip index build --resume (or index add) first"
            )
        ident = self.manifest["identity"]
        if backbone.fingerprint != ident["fingerprint"]:
            raise InputError(
                f"{self.folder} was built with {ident['model']} ({ident['fingerprint']}); {backbone.name} is another model"
            )
        self.backbone = encoder(backbone)  # the searcher puts the index's answers in front of it
        self._query_cache: IndexCache | None = None
        self.decoded = 0
        self._read_parts()

    def _read_parts(self) -> None:
        """The parts' rows, each image's row by digest, and fresh memories (FAISS read on first search)."""
        self.parts = open_parts(self.folder)
        self._rows = [(part, local) for part in self.parts for local in range(len(part.indexed))]
        self._by_digest = {part.indexed[local]["digest"]: row for row, (part, local) in enumerate(self._rows)}
        self._memory: OrderedDict[Any, Any] = OrderedDict()
        self._faiss: Any = None

    # --- making one ---------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        sources: Sequence[str | os.PathLike],
        out: str | os.PathLike,
        model: str | Backbone = DEFAULT_MODEL,
        *,
        methods: Sequence[str] = DEFAULT_METHODS,
        options: dict | None = None,
        union_cap: int = DEFAULT_UNION_CAP,
        dtype: str = "float32",
        faiss: str = "Flat",
        part_size: int = DEFAULT_PART_SIZE,
        resume: bool = False,
        progress: bool = False,
        world: World = World(),
        **backbone_options: Any,
    ) -> Index:
        """Index the images ``sources`` name (folders, globs, files, lists of paths) into the
        folder ``out`` for ``methods`` (their configurations over the model's defaults, under
        ``options``). ``resume`` continues a build of the same sources, model and settings."""
        paths = expand_sources(sources)
        if dtype not in DTYPES:
            raise InputError(f"unknown storage type {dtype!r}; choose one of {', '.join(DTYPES)}")
        if union_cap < 0 or part_size < 1:
            raise InputError("the union cap must be 0 or more and the part size at least 1")
        names = [METHODS.check(m) for m in methods]
        backbone = encoder(model if isinstance(model, (Backbone, CachedEncoder)) else create_backbone(model, **backbone_options))
        configs = {
            name: None if c is None else runnable_by(c, backbone)
            for name, c in method_configs(names, PipelineConfig.for_backbone(backbone), options or {}).items()
        }
        side = StoredSide.for_methods(GrounderPool(backbone), configs, union_cap)
        dim = int(backbone.encode_texts(["a"]).shape[-1])
        ident = identity(backbone, configs, side, dim=dim, dtype=dtype, faiss=faiss, part_size=part_size)
        folder = Path(out)
        join(world, backbone.device.type)
        run(folder, paths, ident, resume, backbone, side, world, progress)
        return cls(folder, backbone)

    def add(self, sources: Sequence[str | os.PathLike], progress: bool = False, world: World = World()) -> int:
        """Index the images ``sources`` name that the index does not hold yet (and finish any
        part an interrupted build or add left); returns how many were already indexed."""
        paths = expand_sources(sources)
        join(world, self.backbone.device.type)
        with locked(self.folder, world):
            known = extend(self.folder, read_manifest(self.folder), paths)[1] if world.main else 0
            barrier(world)
            fill(self.folder, self.backbone, self._side(), read_manifest(self.folder), world, progress)
        self.manifest = read_manifest(self.folder)
        self._read_parts()
        return known

    @classmethod
    def open(cls, folder: str | os.PathLike, backbone: Backbone | None = None, **backbone_options: Any) -> Index:
        """An existing index with its own model (``backbone`` or ``model=`` only to override
        where the same weights live elsewhere: another model is refused)."""
        folder = Path(folder)
        ident = read_manifest(folder)["identity"]  # not an index: one line, before any model loads
        if backbone is None:
            model = backbone_options.pop("model", None) or ident["model"]
            backbone_options = {"precision": ident["precision"], "pixels": ident["pixels"], **backbone_options}
            backbone = create_backbone(model, **backbone_options)
        return cls(folder, backbone)

    # --- searching ----------------------------------------------------------------------
    def search(
        self,
        queries: Sequence[str] | str,
        top: int = 10,
        candidates: int = 100,
        method: Sequence[str] | str = "comclip-plus",
        keep: Any = None,
    ) -> list[SearchResult]:
        """Each query's ``top`` images by each method, re-ranking the ``candidates`` nearest by
        CLIP's cosine; one :class:`SearchResult` per query and method, in that order."""
        from comclip.search.query import Searcher

        if top < 1 or candidates < 1:
            raise InputError(f"--top and --candidates must be at least 1, got {top} and {candidates}")
        names = [method] if isinstance(method, str) else list(method)
        if self._query_cache is None or self._query_cache.keep is not keep:
            self._query_cache = IndexCache(self.backbone.cache_key("img", ""), self.lookup, keep)
        searcher = Searcher(self, {name: self.method_config(name) for name in names}, self._query_cache)
        return searcher.search([queries] if isinstance(queries, str) else list(queries), top, max(top, candidates))

    def method_config(self, name: str) -> PipelineConfig | None:
        """A method's configuration as the index was built for it; another registered method
        over the model's defaults, if the index stores what it reads."""
        configs = self.manifest["identity"]["configs"]
        if name in configs:
            return None if configs[name] is None else PipelineConfig.from_dict(configs[name])
        config = METHODS[METHODS.check(name)].config(PipelineConfig.for_backbone(self.backbone))
        config = None if config is None else runnable_by(config, self.backbone)
        if config is not None:
            grounder = GrounderPool(self.backbone).for_config(config)
            side = self.manifest["identity"]["side"]
            if grounder_key(grounder.describe()) not in side["grounders"] or config.subimage_source not in side["fills"]:
                raise InputError(
                    f"method {name} grounds or fills sub-images in a way this index does not store (it was built for "
                    f"{', '.join(configs)}); rebuild it with --method including {name}"
                )
        return config

    def info(self) -> dict:
        return describe(self.folder)

    def skipped(self) -> list[dict]:
        return skipped_records(self.parts)

    def open_arrays(self) -> None:
        """Open every part's arrays now (embedding tables memory-mapped, the small rest read):
        a process serving many queries pays it once instead of in its first queries' time."""
        for part in self.parts:
            part.open_all()

    def __len__(self) -> int:
        return len(self._rows)

    # --- what the query side reads ------------------------------------------------------
    def shortlist(self, vectors: np.ndarray, k: int) -> list[list[int]]:
        """The rows of the ``k`` nearest images by inner product, per query vector."""
        import faiss

        if self._faiss is None:
            self._faiss = faiss.read_index(str(self.folder / FAISS_FILE))
            try:  # an inverted-file index visits more than its one nearest list
                ivf = faiss.extract_index_ivf(self._faiss)
                ivf.nprobe = min(ivf.nlist, NPROBE)
            except RuntimeError:
                pass
        if not len(self._rows):
            return [[] for _ in vectors]
        threads = faiss.omp_get_max_threads()
        if len(vectors) < FEW_QUERIES:  # threads split one query's scan and then wait on each other: twice as slow here
            faiss.omp_set_num_threads(1)
        try:
            _, rows = self._faiss.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(self._rows)))
        finally:
            faiss.omp_set_num_threads(threads)
        return [[int(r) for r in found if r >= 0] for found in rows]

    def global_vectors(self, rows: list[int]) -> np.ndarray:
        if not rows:
            return np.zeros((0, self.manifest["identity"]["dim"]), np.float32)
        return np.stack([part.array("global")[local] for part, local in map(self._rows.__getitem__, rows)]).astype(np.float32)

    def record(self, row: int) -> dict:
        part, local = self._rows[row]
        return part.indexed[local]

    def path(self, row: int) -> str:
        return self.record(row)["path"]

    def image(self, row: int) -> IndexedImage:
        """The indexed image of ``row``, its pixels decoded only if read (and counted)."""

        def make() -> IndexedImage:
            record = self.record(row)
            picture = DeferredImage(record["file"], tuple(record["decoded"]), record["digest"], self._count_decoded)
            return IndexedImage(picture, record["path"], tuple(record["size"]), record["digest"])

        return self._remembered(("image", row), make)

    def _count_decoded(self) -> None:
        self.decoded += 1

    def grounder_key(self, grounder: Any) -> str:
        key = grounder_key(grounder.describe())
        if key not in self.manifest["identity"]["side"]["grounders"]:
            raise InputError(
                f"{self.folder} stores no candidates of the grounder {grounder.describe()}: it was built by a comclip "
                "whose grounders differ; build it again with this one (comclip index build SOURCE... --out NEW_DIR)"
            )
        return key

    def candidates(self, row: int, key: str) -> tuple[list[Box], torch.Tensor]:
        """Grounder ``key``'s candidate boxes and region embeddings on image ``row``."""

        def make() -> tuple[list[Box], torch.Tensor]:
            part, local = self._rows[row]
            table = f"cand.{key}"
            a, b = part.span(table, local)
            boxes = [stored_box(box, runs) for box, runs in zip(part.array(f"{table}.box")[a:b], part.runs(table, a, b))]
            return boxes, torch.from_numpy(np.array(part.array(f"{table}.vec")[a:b], dtype=np.float32))

        return self._remembered(("cand", row, key), make)

    def lookup(self, content: str) -> np.ndarray | None:
        """The stored embedding of an image key's content (see :meth:`CachedEncoder.cache_key`): an
        indexed image's digest, or a sub-image of one of its candidates or candidate pairs."""
        row = self._by_digest.get(content)
        if row is not None:
            part, local = self._rows[row]
            return np.asarray(part.array("global")[local], dtype=np.float32)
        parsed = parse_sub_key(content)
        if parsed is None or parsed[0] not in self._by_digest:
            return None
        digest, fill, bounds = parsed
        if fill not in self.manifest["identity"]["side"]["fills"]:
            return None
        return self._regions(self._by_digest[digest], fill).get(bounds)

    def _regions(self, row: int, fill: str) -> dict[frozenset, np.ndarray]:
        """``{set of pixel bounds: embedding}`` of one image's stored sub-images with ``fill``,
        its candidates' and their pairs' (the first row of a set), read once."""

        def make() -> dict[frozenset, np.ndarray]:
            part, local = self._rows[row]
            a, b = part.span(f"sub.{fill}", local)
            singles = [frozenset(map(tuple, runs.tolist())) for runs in part.runs(f"sub.{fill}", a, b)]
            found: dict[frozenset, np.ndarray] = {}
            for region, vector in zip(singles, np.array(part.array(f"sub.{fill}.vec")[a:b], dtype=np.float32)):
                found.setdefault(region, vector)
            c, d = part.span(f"union.{fill}", local)
            pairs = part.array(f"union.{fill}.pair")[c:d].tolist()
            for (j, i), vector in zip(pairs, np.array(part.array(f"union.{fill}.vec")[c:d], dtype=np.float32)):
                found.setdefault(singles[j] | singles[i], vector)
            return found

        return self._remembered(("regions", row, fill), make)

    def _remembered(self, key: Any, make: Any) -> Any:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        value = self._memory[key] = make()
        while len(self._memory) > MEMORY:
            self._memory.popitem(last=False)
        return value

    def _side(self) -> StoredSide:
        ident = self.manifest["identity"]
        configs = {name: None if c is None else PipelineConfig.from_dict(c) for name, c in ident["configs"].items()}
        return StoredSide.for_methods(GrounderPool(self.backbone), configs, ident["side"]["union_cap"])


def describe(folder: str | os.PathLike) -> dict:
    """An index's manifest with its sizes (bytes on disk, in all and per indexed image) and
    the files it skipped with their reasons; read without loading its model."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    parts = open_parts(folder)
    indexed = sum(len(p.indexed) for p in parts)
    size = folder_bytes(folder)
    skipped = skipped_records(parts)
    return {
        **manifest,
        "folder": str(folder),
        "indexed": indexed,
        "bytes": size,
        "bytes_per_image": size / indexed if indexed else None,
        "skipped_files": skipped,
    }
