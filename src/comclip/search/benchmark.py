"""Search quality on the sandbox: a gallery of every image of the minimal pairs (so each
query's swapped twin is in it), the captions as queries, and R@1/5/10 per task for CLIP's
order and each method's re-ranking of CLIP's shortlist. A hit is an image whose scene the
caption describes: an object of the named shape, colour and size for each
entity, each a different object, and the relation holding between them (a gallery of random
scenes holds some that another item's caption also describes; they are hits, not errors).
``twin`` is the % of queries whose true image ranks above its swapped twin, as the paired
benchmarks count."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from comclip.backbones import Backbone
from comclip.digests import image_digest
from comclip.jsonfile import write_whole
from comclip.search.index import Index

RECALL_AT = (1, 5, 10)
#: The tasks whose twin differs only in what CLIP cannot see (substitution changes a word).
SEARCH_TASKS = ("binding", "object-swap", "order-swap")


def render_gallery(tasks: Sequence[str], seed: int, n: int, folder: str | os.PathLike) -> tuple[list[tuple], dict]:
    """Draw every image of ``n`` minimal pairs per task into ``folder``. Returns the queries as
    ``(task, caption, true graph, digest of the true image, digest of its twin)`` and the scene
    of each image digest."""
    from comclip.sandbox.pairs import minimal_pairs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    queries, scenes = [], {}
    for task in tasks:
        for pair in minimal_pairs(task, seed, n):
            digests = []
            for k, scene in enumerate(pair.scenes):
                image = scene.render()
                image.save(folder / f"{pair.id.replace('/', '_')}-{k}.png")
                digests.append(image_digest(image.convert("RGB")))
                scenes[digests[-1]] = scene
            for k, caption in enumerate(pair.captions):
                queries.append((task, caption, pair.graphs[k], digests[k], digests[1 - k]))
    return queries, scenes


def describes(graph: dict, scene: Any) -> bool:
    """Whether the caption's true graph is true of the scene (see the module docstring)."""
    from comclip.sandbox.scenes import relation_between

    entities = graph["entities"]

    def fits(entity: dict, obj: Any) -> bool:
        return obj.shape == entity["head"] and set(entity["attributes"]) <= {obj.size, obj.colour}

    for chosen in itertools.permutations(scene.objects, len(entities)):
        if all(fits(e, o) for e, o in zip(entities, chosen)) and all(
            relation_between(chosen[r["subject"]], chosen[r["object"]]) == r["predicate"] for r in graph["relations"]
        ):
            return True
    return False


def sandbox_search(
    backbone: Backbone,
    out: Path,
    tasks: Sequence[str] = SEARCH_TASKS,
    seed: int = 0,
    n: int = 50,
    methods: Sequence[str] = ("clip", "comclip", "comclip-plus"),
    candidates: int = 100,
    options: dict | None = None,
) -> dict:
    """Build the gallery's index in ``out`` and score every caption as a query; writes
    ``report.json`` and ``report.md`` there and returns the report."""
    out = Path(out)
    queries, scenes = render_gallery(tasks, seed, n, out / "gallery")
    index = Index.build([out / "gallery"], out / "index", backbone, methods=methods, options=options)
    results = index.search([q[1] for q in queries], top=max(RECALL_AT), candidates=candidates, method=list(methods))
    found: dict[tuple[str, str], list[tuple[int | None, bool]]] = {}
    for q, (task, _, graph, truth, twin) in enumerate(queries):
        for result in results[q * len(methods) : (q + 1) * len(methods)]:
            digests = [index.record(h.row)["digest"] for h in result.hits]
            ranks = [h.rank for h, d in zip(result.hits, digests) if describes(graph, scenes[d])]
            above_twin = truth in digests and (twin not in digests or digests.index(truth) < digests.index(twin))
            found.setdefault((task, result.method), []).append((ranks[0] if ranks else None, above_twin))
    report = {
        "benchmark": "sandbox-search",
        "model": backbone.name,
        "fingerprint": backbone.fingerprint,
        "tasks": list(tasks),
        "seed": seed,
        "n_pairs": n,
        "gallery": index.info()["indexed"],
        "candidates": candidates,
        "configs": index.manifest["identity"]["configs"],
        "versions": _versions(),
        "recall": {f"{task}/{method}": _recalls(ranks) for (task, method), ranks in found.items()},
    }
    write_whole(out / "report.json", json.dumps(report, indent=1) + "\n")
    write_whole(out / "report.md", markdown(report))
    return report


def _recalls(found: list[tuple[int | None, bool]]) -> dict[str, Any]:
    n = len(found)
    recalls = {f"R@{k}": 100.0 * sum(r is not None and r <= k for r, _ in found) / n for k in RECALL_AT}
    return {"queries": n, **recalls, "twin": 100.0 * sum(t for _, t in found) / n}


def markdown(report: dict) -> str:
    lines = [
        f"# Sandbox search: {report['model']}, seed {report['seed']}",
        "",
        f"A gallery of {report['gallery']} images ({report['n_pairs']} minimal pairs per task, both images of each); every "
        f"caption is a query; each method re-ranks CLIP's {report['candidates']} nearest. R@K: % of queries with an image the caption describes in the top K.",
        "",
        "| task | method | queries | R@1 | R@5 | R@10 | above its twin |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in report["recall"].items():
        task, method = key.split("/")
        lines.append(
            f"| {task} | {method} | {r['queries']} | {r['R@1']:.1f} | {r['R@5']:.1f} | {r['R@10']:.1f} | {r['twin']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _versions() -> dict:
    from comclip.eval.reports.report import package_versions

    return {**package_versions(), "faiss": _faiss_version()}


def _faiss_version() -> str:
    import faiss

    return str(faiss.__version__)
