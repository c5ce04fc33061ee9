"""Evaluation suites: several datasets and models in one command, and one table from them.

A suite is a TOML file, as clip_benchmark users run several datasets and models at once::

    models = ["openai/clip-vit-base-patch32"]
    methods = ["clip", "comclip", "comclip-plus"]

    [[datasets]]
    name = "sugarcrepe"
    data = "data/sugarcrepe.json"
    image_dir = "data/val2017"

    [[datasets]]
    name = "sandbox"          # generated data: task, n, seed
    task = "binding"
    n = 50
    models = ["comclip/sandbox"]   # a dataset's own models / methods override the top level
    ties = "first"                 # any evaluation option (EvalOptions: limit, rerank_top,
                                   # n_bootstrap, bootstrap_seed, ties, workers), here or at the top
    pipeline = {weighting = "softmax"}  # PipelineConfig options over every method, as flags are

Each cell (dataset x model) is an ordinary ``comclip eval`` run in a folder of its own under
the suite's ``--out``, with the same run identity and resume rules, so a killed suite
continues where it stopped. The combined report (``suite.json``, ``suite.csv``,
``suite.md``, one chart per dataset) gives per dataset and model every method's headline
metric with its interval and the paired difference to CLIP.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from comclip.declared import declared
from comclip.errors import InputError
from comclip.eval.reports.compare import safe_name
from comclip.eval.runs.options import EvalOptions
from comclip.jsonfile import read_toml

#: Keys a ``[[datasets]]`` table may hold besides the evaluation options (:data:`EVAL_KEYS`):
#: which dataset, read how, scored by which models and methods.
DATASET_KEYS = {
    "name": str,
    "label": str,
    "data": str,
    "image_dir": str,
    "split": str,
    "task": str,
    "n": int,
    "seed": int,
    "models": list,
    "methods": list,
    "pipeline": dict,
}
#: The evaluation options a suite may set, at the top (for every dataset) or in a dataset's
#: table: every field of :class:`~comclip.eval.runs.options.EvalOptions`, checked as declared.
EVAL_KEYS = tuple(declared(EvalOptions))
#: Methods of a suite that names none.
DEFAULT_METHODS = ("clip", "comclip")


@dataclass(frozen=True)
class DatasetEntry:
    """One ``[[datasets]]`` table: which dataset, read how, scored by which models and methods."""

    name: str
    label: str
    models: tuple[str, ...]
    methods: tuple[str, ...]
    options: dict = field(default_factory=dict, hash=False)
    #: The evaluation options the file gives this dataset (its table's over the top level's).
    eval_options: dict = field(default_factory=dict, hash=False)
    #: The pipeline options over every method (its table's ``pipeline`` over the top level's).
    pipeline_options: dict = field(default_factory=dict, hash=False)

    def open(self):
        """The dataset, read (or generated) as ``comclip eval`` would."""
        from comclip.eval.runs.evaluate import open_dataset

        given = {key: self.options[key] for key in ("split", "task", "seed", "n") if key in self.options}
        return open_dataset(self.name, self.options.get("data"), self.options.get("image_dir"), **given)


@dataclass(frozen=True)
class Cell:
    """One ordinary evaluation run of a suite: a dataset entry under one model."""

    entry: DatasetEntry
    model: str

    @property
    def name(self) -> str:
        return f"{self.entry.label}/{self.model}"

    def folder(self, out: Path) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.model).strip("-.")[-60:] or "model"
        return out / f"{safe_name(self.entry.label)}__{slug}"


def read_suite(path: str | Path, only: str | None = None, data_root: str | Path | None = None) -> list[Cell]:
    """The cells of the suite file ``path`` (those whose ``dataset/model`` name matches the
    shell pattern ``only``); every mistake in the file is one error naming it and the key.
    Relative ``data`` and ``image_dir`` paths are read under ``data_root`` where it is given,
    else under the file's own ``data_root`` key (itself relative to the file), else from the
    current folder."""
    path = Path(path)
    spec = read_toml(path)
    unknown = sorted(set(spec) - {"models", "methods", "datasets", "pipeline", "data_root", *EVAL_KEYS})
    if unknown:
        raise InputError(
            f"{path}: unknown top-level key {unknown[0]!r} (a suite has models, methods, [[datasets]], "
            f"a pipeline table, data_root and the evaluation options {', '.join(EVAL_KEYS)})"
        )
    root = _data_root(spec, path, data_root)
    shared = _eval_options(spec, f"{path}")
    pipeline = _pipeline_options(spec.get("pipeline", {}), f"{path}: pipeline")
    tables = spec.get("datasets")
    if not isinstance(tables, list) or not tables:
        raise InputError(f"{path}: no [[datasets]] tables: a suite needs at least one")
    models = _names(spec.get("models", []), path, "models")
    methods = _names(spec.get("methods", list(DEFAULT_METHODS)), path, "methods")
    entries = [
        _rooted(_entry(table, n, path, (models, methods), shared, pipeline), root) for n, table in enumerate(tables, start=1)
    ]
    labels = [e.label for e in entries]
    repeated = next((label for label in labels if labels.count(label) > 1), None)
    if repeated:
        raise InputError(f'{path}: two datasets are labelled {repeated!r}; give each a label = "..." of its own')
    cells = [Cell(entry, model) for entry in entries for model in entry.models]
    _check_folder_names(cells, path)
    chosen = [c for c in cells if only is None or fnmatch.fnmatch(c.name, only)]
    if not chosen:
        raise InputError(f"{path}: no cell matches --only {only!r}; cells: {', '.join(c.name for c in cells)}")
    return chosen


def _data_root(spec: dict, path: Path, given: str | Path | None) -> Path | None:
    """The folder relative data paths are read under: ``--data-root``, else the file's
    ``data_root`` (relative to the file), else None (the current folder)."""
    if given is not None:
        root, where = Path(given), f"--data-root {given}"
    elif "data_root" in spec:
        if not isinstance(spec["data_root"], str):
            raise InputError(f"{path}: data_root must be a folder's path, got {spec['data_root']!r}")
        root, where = path.parent / spec["data_root"], f"{path}: data_root {spec['data_root']!r}"
    else:
        return None
    if not root.is_dir():
        raise InputError(f"{where}: {root} is not a folder")
    return root


def _rooted(entry: DatasetEntry, root: Path | None) -> DatasetEntry:
    """``entry`` with its relative ``data`` and ``image_dir`` read under ``root`` (hub names
    and absolute paths as they are)."""
    from comclip.eval.benchmarks.datasets.hub import HF_PREFIX

    if root is None:
        return entry
    options = dict(entry.options)
    for key in ("data", "image_dir"):
        value = options.get(key)
        if value is not None and not value.startswith(HF_PREFIX) and not Path(value).is_absolute():
            options[key] = str(root / value)
    return replace(entry, options=options)


def _check_folder_names(cells: list[Cell], path: Path) -> None:
    """Each cell's folder is its own: two cells whose labels or models differ but make the same
    folder name (``a/b`` and ``a-b``, a long model name cut) are refused before anything runs,
    case-blind (as some file systems are)."""
    seen: dict[str, Cell] = {}
    for cell in cells:
        name = cell.folder(Path()).name.casefold()
        if name in seen:
            raise InputError(
                f"{path}: cells {seen[name].name!r} and {cell.name!r} would share the folder {cell.folder(Path()).name!r}; "
                'give a dataset a label = "..." of its own'
            )
        seen[name] = cell


def _names(value: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(f"{path}: {key} must be a list of names, got {value!r}")
    return tuple(dict.fromkeys(v.strip() for v in value))


def _eval_options(table: dict, where: str, shared: dict | None = None) -> dict:
    """The evaluation options ``table`` gives (over ``shared``), checked as declared."""
    given = {**(shared or {}), **{key: table[key] for key in EVAL_KEYS if key in table}}
    try:
        EvalOptions(**given)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    return given


def _pipeline_options(table: Any, where: str, shared: dict | None = None) -> dict:
    """The pipeline options ``table`` gives (over ``shared``), checked as
    :class:`~comclip.config.PipelineConfig` checks them."""
    from comclip.config import PipelineConfig

    if not isinstance(table, dict):
        raise InputError(f"{where} must be a table of pipeline options, got {table!r}")
    given = {**(shared or {}), **table}
    try:
        PipelineConfig.layered({}, **given)
    except (InputError, TypeError) as exc:
        raise InputError(f"{where}: {exc}") from None
    return given


def _entry(
    table: Any, n: int, path: Path, names: tuple[tuple[str, ...], tuple[str, ...]], shared: dict, pipeline: dict
) -> DatasetEntry:
    from comclip.eval.benchmarks.datasets import DATASETS, takes_option
    from comclip.methods import METHODS

    where = f"{path}: [[datasets]] {n}"
    models, methods = names
    if not isinstance(table, dict):
        raise InputError(f"{where} is not a table")
    for key, value in table.items():
        if key in EVAL_KEYS:
            continue
        expected = DATASET_KEYS.get(key)
        if expected is None:
            raise InputError(f"{where}: unknown key {key!r}; a dataset takes {', '.join(sorted([*DATASET_KEYS, *EVAL_KEYS]))}")
        if not isinstance(value, expected) or isinstance(value, bool):
            raise InputError(f"{where}: {key} must be {expected.__name__}, got {value!r}")
    name = table.get("name")
    if name not in DATASETS:
        raise InputError(f"{where}: name {name!r} is not a dataset; choose from {', '.join(sorted(DATASETS))}")
    ignored = [key for key in ("split", "task", "seed", "n") if key in table and not takes_option(str(name), key)]
    if ignored:
        raise InputError(f"{where}: the {name} dataset takes no {ignored[0]} (it would be ignored); remove it")
    if "seed" in table and table["seed"] < 0:
        raise InputError(f"{where}: seed must be 0 or more, got {table['seed']}")
    entry_models = _names(table["models"], path, f"[[datasets]] {n} models") if "models" in table else models
    entry_methods = _names(table["methods"], path, f"[[datasets]] {n} methods") if "methods" in table else methods
    if not entry_models:
        raise InputError(f"{where}: no models (give models = [...] at the top or in the table)")
    if not entry_methods:
        raise InputError(
            f"{where}: no methods (give methods = [...] at the top or in the table, or leave it out for clip and comclip)"
        )
    unknown = [m for m in entry_methods if m not in METHODS]
    if unknown:
        raise InputError(f"{where}: unknown method {unknown[0]!r}; registered: {', '.join(METHODS)}")
    if "n" in table and table["n"] < 1:
        raise InputError(f"{where}: n must be at least 1, got {table['n']}")
    options = {k: v for k, v in table.items() if k not in ("name", "label", "models", "methods", "pipeline", *EVAL_KEYS)}
    evaluation = _eval_options(table, where, shared)
    changes = _pipeline_options(table.get("pipeline", {}), f"{where}: pipeline", pipeline)
    return DatasetEntry(str(name), str(table.get("label", name)), entry_models, entry_methods, options, evaluation, changes)


def entries(cells: list[Cell]) -> list[DatasetEntry]:
    """The dataset entries of ``cells``, each once, in the suite's order."""
    return list({cell.entry.label: cell.entry for cell in cells}.values())


def open_datasets(cells: list[Cell]) -> dict[str, Any]:
    """Each dataset of ``cells`` read once, by label, before any model loads (a file that is
    not there is its error, naming it)."""
    return {entry.label: entry.open() for entry in entries(cells)}


def check_cells(cells: list[Cell]) -> list[str]:
    """Every dataset of ``cells`` read before any model loads: one line per dataset (examples,
    images missing among those a run scores) or per problem."""
    lines = []
    for entry in entries(cells):
        try:
            dataset = entry.open()
        except InputError as exc:
            lines.append(f"problem: {entry.label}: {exc}")
            continue
        limit = entry.eval_options.get("limit")
        scored = dataset.first(limit) if limit else dataset
        missing = _missing_images(scored)
        said = f"{len(scored)} {'queries' if dataset.task == 'retrieval' else 'examples'}"
        if missing:
            lines.append(f"problem: {entry.label}: {said}, {len(missing)} image files missing (first: {missing[0]})")
        else:
            lines.append(f"ok: {entry.label}: {said}, every image file found")
    return lines


def _missing_images(dataset) -> list[str]:
    paths = dataset.images if dataset.task == "retrieval" else dataset.image_files()
    return list(dict.fromkeys(str(p) for p in paths if isinstance(p, (str, Path)) and not Path(p).is_file()))
