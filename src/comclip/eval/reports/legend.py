"""What a newcomer reads first in ``report.md``: a legend of every method label, and a short
takeaway computed from the numbers (which method is ahead where, by how much, and whether the
intervals say it is more than chance). Nothing here is canned: every sentence comes from the
report it opens."""

from __future__ import annotations

from typing import Any

from comclip.methods import METHODS

#: What each setting of a composed method means, by (field, value); ``{}`` takes the config.
TERMS = {
    ("weighting", "sum"): "weights w_i = s_i / sum_j s_j, each sub-image's cosine with its own phrase over their sum "
    "(the authors' code; a negative cosine counts as 0)",
    ("weighting", "softmax"): "weights w_i = the softmax of the s_i (the paper's other weighting)",
    ("subimage_fill", "black"): "outside each region black (the paper)",
    ("subimage_fill", "mean"): "outside each region the image's mean colour",
    ("subimage", "tokens"): "each sub-image encoded from the ViT patch tokens its region touches (it costs its area)",
    ("score_mode", "comclip"): "score: the caption's cosine with the global image embedding plus the weighted "
    "sub-image embeddings (the paper)",
    ("score_mode", "evidence"): "score: the paper's, plus {evidence_weight} x how well each entity's phrase matches "
    "its own sub-image (entity evidence)",
    ("relation_check", "geometry"): "spatial relations (left of, above, ...) checked on the grounded boxes (+geometry)",
    ("relation_check", "pixels"): "spatial relations checked on the grounded boxes, and depth and pointing on the "
    "entities' sub-images, a depth relation's entities grounded again with their candidates completed (+pixels)",
    ("assignment", "joint"): "the entities of a caption grounded jointly, each to a region of its own",
}
CLIP_LEGEND = "plain CLIP: the cosine of the global image and caption embeddings (no parse, no sub-images)"


def legend(report: dict) -> list[str]:
    """``## Methods``: one line per method label, saying what each of its parts means."""
    lines = ["", "## Methods", ""]
    for run in report["runs"]:
        lines.append(f"- **{run['method']}**: {describe_method(run['method'], run.get('config') or {})}")
    return lines


def describe_method(name: str, config: dict) -> str:
    if "weighting" not in config:  # plain CLIP records only its model
        return CLIP_LEGEND
    known = f"{METHODS[name].description}. " if name in METHODS else ""
    settings = [(field, str(config.get(field))) for field in dict.fromkeys(field for field, _ in TERMS)]
    parts = [TERMS[setting].format(**config) for setting in settings if setting in TERMS]
    parser, grounder = _name(config.get("parser")), _name(config.get("grounder"))
    return f"{known}ComCLIP with {'; '.join(parts)}; captions parsed by {parser}, entities grounded by {grounder}."


def _name(part: Any) -> str:
    return str(part.get("name", part)) if isinstance(part, dict) else str(part)


def takeaway(report: dict) -> list[str]:
    """``## Takeaway``: the best method on the headline metric against CLIP, every method's
    paired difference from CLIP with whether its interval excludes 0, and where (by subset)
    the best one is ahead or behind."""
    comparisons = report.get("comparisons") or []
    runs = {run["method"]: run for run in report["runs"]}
    metric = comparisons[0]["metric"] if comparisons else next(iter(report["runs"][0]["metrics"]), None)
    if metric is None or not all(metric in run["metrics"] for run in runs.values()):
        return []
    top = max(run["metrics"][metric]["value"] for run in runs.values())
    tied = [run for run in runs.values() if run["metrics"][metric]["value"] == top]
    best = tied[0]
    if len(tied) > 1:  # an exact tie is no one's win
        names = " and ".join(f"**{run['method']}**" for run in tied)
        return ["", "## Takeaway", "", f"- Best on {metric}: a tie between {names}, {_value(best['metrics'][metric])}."] + [
            f"- {c['method']}: {_verdict(c)}" for c in comparisons if c["metric"] == metric
        ]
    lines = ["", "## Takeaway", "", f"- Best on {metric}: **{best['method']}**, {_value(best['metrics'][metric])}."]
    if "clip" in runs and best["method"] != "clip":
        clip = runs["clip"]["metrics"][metric]
        overlap = _overlap(best["metrics"][metric], clip)
        lines[-1] = lines[-1][:-1] + f", against CLIP's {_value(clip)}{overlap}."
    lines += [f"- {c['method']}: {_verdict(c)}" for c in comparisons if c["metric"] == metric]
    if "clip" in runs and best["method"] != "clip":
        lines += _where(best, runs["clip"], metric)
    return lines


def _value(metric: dict) -> str:
    interval = f" [{metric['ci95'][0]:.1f}, {metric['ci95'][1]:.1f}]" if metric.get("ci95") else ""
    return f"{metric['value']:.1f}%{interval}"


def _overlap(a: dict, b: dict) -> str:
    if not (a.get("ci95") and b.get("ci95")):
        return ""
    apart = a["ci95"][0] > b["ci95"][1] or b["ci95"][0] > a["ci95"][1]
    return "; the two intervals do not overlap" if apart else "; the two intervals overlap"


def _verdict(c: dict) -> str:
    """A paired difference from CLIP in words: ahead, behind, or not told apart here."""
    points = f"{c['difference']:+.1f} points against CLIP on the {c['n']} examples both scored"
    if c.get("ci95"):
        low, high = c["ci95"]
        said = "ahead" if low > 0 else "behind" if high < 0 else "not told apart from CLIP here (the interval holds 0)"
        return f"{points} (paired 95% interval [{low:.1f}, {high:.1f}]): {said}."
    said = "ahead" if c["difference"] > 0 else "behind" if c["difference"] < 0 else "level"
    clear = "a clear difference" if c.get("p_mcnemar", 1.0) < 0.05 else "not a clear difference"
    return f"{points} ({c['improved']} better, {c['worsened']} worse; McNemar p {c.get('p_mcnemar', 1.0):.3g}, {clear}): {said}."


def _where(best: dict, clip: dict, metric: str) -> list[str]:
    """Subsets where the best method is ahead of CLIP and where behind, largest first."""
    gaps = []
    for subset, block in best.get("subsets", {}).items():
        theirs = clip.get("subsets", {}).get(subset, {}).get(metric)
        if metric in block and theirs:
            gaps.append((block[metric]["value"] - theirs["value"], subset))
    if len(gaps) < 2:
        return []
    ahead = ", ".join(f"{s} ({d:+.1f})" for d, s in sorted(gaps, reverse=True) if d > 0)
    behind = ", ".join(f"{s} ({d:+.1f})" for d, s in sorted(gaps) if d < 0)
    said = f"- By subset, {best['method']} is ahead of CLIP on {ahead or 'none'}"
    return [said + (f" and behind on {behind}." if behind else ".")]


def tie_line(report: dict) -> list[str]:
    """How ties were judged, how many examples a tie decided per method, and where the
    dataset's own code breaks ties another way."""
    rule = (report.get("ties") or {}).get("rule", "strict")
    official = (report.get("ties") or {}).get("official", "strict")
    said = (
        "a tie between a true and a false option counts as wrong"
        if rule == "strict"
        else ("a tie between a true and a false option counts as right (the true option first, as an argmax meets it)")
    )
    counts = "; ".join(
        f"{run['method']} {sum(run['ties'].values())} ({', '.join(f'{m} {n}' for m, n in run['ties'].items())})"
        for run in report["runs"]
        if run.get("ties")
    )
    lines = [f"Ties (`--ties {rule}`): {said}. Examples where a tie decided a metric: {counts or 'none'}."]
    if official != rule:
        lines.append(f"This dataset's own code counts ties as `{official}`: `--ties {official}` reproduces its published rule.")
    return lines
