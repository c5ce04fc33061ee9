"""Where a composed method's errors come from: the parse, the grounding or the scoring.

Each scored example of a composed method gets a small ``diagnosis`` in its record:

- ``parse_wrong``: some caption's parse differs from its true scene graph (entity heads with
  their attributes, and relations by subject head, predicate and object head), where the
  dataset gives true graphs (the sandbox; ``Example.given``); else absent.
- ``grounding_wrong``: some entity was grounded to a box that does not cover its true object
  (the image's one true object whose label is the entity's head: IoU >= 0.5 with its whole
  shape's box or with the box of its pixels that show, see
  :func:`~comclip.eval.reports.grounding_accuracy.covers`), where the dataset knows the boxes
  (``Example.boxes``); else absent.
- ``entities``: ``[right, checked]``: of the entities of each image's own caption (in a
  Winoground-kind group, image k with caption k), checked as above, how many were grounded to
  their true object: the method's own grounding of the objects a caption truly
  names, by the phrases and assignment it scores with (:func:`entity_grounding` sums them).
- ``margin``: the smallest grounding margin over the example's entities (the grounder's best
  candidate score minus its second: how sure the grounding was), for any data.

A report then splits each method's wrong examples by stage (:func:`attribution`) where gold is
known, and otherwise compares the signals of its wrong and right examples (:func:`signals`).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence

from comclip.boxes import bounding_box
from comclip.eval.benchmarks.datasets import WINOGROUND, Example
from comclip.eval.reports.grounding_accuracy import covers, shares, shown_boxes
from comclip.eval.reports.tables import row
from comclip.parsing import SceneGraph
from comclip.results import NOT_GROUNDED


def diagnose(example: Example, results: Sequence[Sequence]) -> dict:
    """The diagnosis of one example from its ``[images][texts]`` ComCLIP results."""
    out: dict = {}
    graphs = {r.text: r.graph for row in results for r in row}
    if example.given and all(text in example.given for text in graphs):
        out["parse_wrong"] = any(_graph_key(graphs[t]) != _graph_key(_as_graph(example.given[t], t)) for t in graphs)
    if example.boxes:
        truths = zip(example.boxes, shown_boxes(example))
        hits = [[_grounded(result, truth, shown) for result in row] for row, (truth, shown) in zip(results, truths)]
        out["grounding_wrong"] = not all(hit for row in hits for pair in row for hit in pair)
        checked = [hit for pair in _own_captions(example, hits) for hit in pair]
        out["entities"] = [sum(checked), len(checked)]
    margins = [p.margin for row in results for r in row for p in r.parts if p.kind == "entity" and p.margin is not None]
    if margins:
        out["margin"] = round(min(margins), 6)
    return out


def _as_graph(given, text: str) -> SceneGraph:
    return given if isinstance(given, SceneGraph) else SceneGraph.from_dict(given, text=text)


def _graph_key(graph: SceneGraph) -> tuple:
    """What must agree for two parses to be the same: entities and relations by their words."""
    entities = sorted((e.head, tuple(sorted(e.attributes))) for e in graph.entities)
    heads = {e.id: e.head for e in graph.entities}
    relations = sorted((heads[r.subject], " ".join(r.predicate.split()), heads[r.object]) for r in graph.relations)
    return tuple(entities), tuple(relations)


def _own_captions(example: Example, hits: list[list]) -> list:
    """Of ``hits`` (per image, per caption), those of each image with the caption that is true
    of it: in a Winoground-kind group, image k and caption k (a wrong caption names objects the
    image may not hold, so where its entities land is no grounding error); else every pair."""
    if example.kind == WINOGROUND:
        return [row[k] for k, row in enumerate(hits) if k < len(row)]
    return [pair for row in hits for pair in row]


def _grounded(result, truth, shown) -> list[bool]:
    """For each entity of this pair whose head names exactly one true object of the image:
    was it grounded to a box that covers that object (``shown``: each object's shown box)?"""
    by_label = Counter(label for label, _ in truth)
    boxes = {label: (whole, seen) for (label, whole), seen in zip(truth, shown)}
    hits = []
    for part in result.parts:
        if part.kind != "entity" or NOT_GROUNDED in part.flags:
            continue
        head = result.graph.entity(part.entities[0]).head
        if by_label.get(head) == 1:
            hits.append(covers(bounding_box(part.boxes), *boxes[head]))
    return hits


def entity_grounding(records: list[dict], n_bootstrap: int, seed: int) -> dict:
    """``{"entity_grounding": {value, ci95, n, subsets}}``: the share of a method's entities
    grounded to their true object, over the records that count them (see :func:`diagnose`);
    empty where none does."""
    counted = [r for r in records if r.get("status") == "ok" and "entities" in r.get("diagnosis", {})]
    if not counted:
        return {}

    hits, subsets = [], []
    for r in counted:
        right, checked = r["diagnosis"]["entities"]
        hits += [k < right for k in range(checked)]
        subsets += [r.get("subset", "")] * checked
    return {"entity_grounding": shares(hits, subsets, n_bootstrap, seed)}


def attribution(records: list[dict], metric: str) -> dict | None:
    """Of a method's wrong examples (in ``metric``), how many had a wrong parse, a wrong
    grounding, both, or neither (the scoring itself); None where no record carries gold."""
    diagnosed = [
        r
        for r in records
        if r.get("status") == "ok"
        and metric in r.get("correct", {})
        and ("parse_wrong" in r.get("diagnosis", {}) or "grounding_wrong" in r.get("diagnosis", {}))
    ]
    if not diagnosed:
        return None
    wrong = [r["diagnosis"] for r in diagnosed if not r["correct"][metric]]
    parse = [bool(d.get("parse_wrong")) for d in wrong]
    ground = [bool(d.get("grounding_wrong")) for d in wrong]
    return {
        "metric": metric,
        "examples": len(diagnosed),
        "wrong": len(wrong),
        "parse": sum(p and not g for p, g in zip(parse, ground)),
        "grounding": sum(g and not p for p, g in zip(parse, ground)),
        "parse_and_grounding": sum(p and g for p, g in zip(parse, ground)),
        "neither": sum(not p and not g for p, g in zip(parse, ground)),
        "parse_known": any("parse_wrong" in d for d in wrong),
        "grounding_known": any("grounding_wrong" in d for d in wrong),
    }


def signals(records: list[dict], metric: str) -> dict | None:
    """For data without gold: the share of wrong and of right examples that took each fallback,
    and their median smallest grounding margin; None without composed records."""
    scored = [r for r in records if r.get("status") == "ok" and metric in r.get("correct", {}) and "diagnosis" in r]
    if not scored:
        return None
    out = {}
    for name, group in (
        ("wrong", [r for r in scored if not r["correct"][metric]]),
        ("right", [r for r in scored if r["correct"][metric]]),
    ):
        flags = Counter(f for r in group for f, n in r.get("flags", {}).items() if n)
        margins = [r["diagnosis"]["margin"] for r in group if "margin" in r["diagnosis"]]
        out[name] = {
            "n": len(group),
            "flags": {f: round(100 * n / len(group), 1) for f, n in sorted(flags.items())} if group else {},
            "median_margin": statistics.median(margins) if margins else None,
        }
    return {"metric": metric, **out}


def error_sources(records: list[dict], metric: str) -> dict:
    """A method's report section: ``errors`` (stages of its wrong examples) where gold is
    known, else ``signals``; nothing for plain CLIP, whose records carry no diagnosis."""
    found = attribution(records, metric)
    if found is not None:
        return {"errors": found}
    found = signals(records, metric)
    return {"signals": found} if found is not None else {}


def error_section(report: dict) -> list[str]:
    """The markdown of :func:`error_sources` for every method of a report."""
    return _stage_table([run for run in report["runs"] if run.get("errors")]) + _signal_table(
        [run for run in report["runs"] if run.get("signals")]
    )


def _stage_table(runs: list[dict]) -> list[str]:
    if not runs:
        return []
    lines = [
        "",
        "## Where errors come from (wrong examples by stage: parse differs from the true graph, an "
        "entity's box IoU < 0.5 with its true box and with what shows of it, or neither: the scoring)",
        "",
        row(["method", "metric", "wrong / examples", "parse", "grounding", "parse and grounding", "neither (scoring)"]),
        "|---" * 7 + "|",
    ]
    for run in runs:
        e = run["errors"]
        parse = e["parse"] if e.get("parse_known") else "-"
        grounding = e["grounding"] if e.get("grounding_known") else "-"
        lines.append(
            row(
                [
                    run["method"],
                    e["metric"],
                    f"{e['wrong']} / {e['examples']}",
                    parse,
                    grounding,
                    e["parse_and_grounding"],
                    e["neither"],
                ]
            )
        )
    return lines


def _signal_table(runs: list[dict]) -> list[str]:
    if not runs:
        return []
    lines = [
        "",
        "## Signals of wrong and right examples (no true parses or boxes in this data)",
        "",
        row(["method", "examples", "n", "fallbacks (% of them)", "median smallest grounding margin"]),
        "|---" * 5 + "|",
    ]
    for run in runs:
        for name in ("wrong", "right"):
            found = run["signals"][name]
            flags = ", ".join(f"{f} {v:g}" for f, v in found["flags"].items()) or "none"
            margin = "-" if found["median_margin"] is None else f"{found['median_margin']:.4f}"
            lines.append(row([run["method"], name, found["n"], flags, margin]))
    return lines
