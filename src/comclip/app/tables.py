"""The tables the web app shows for one press of Score, as HTML: the scores, the parses, every
sub-image's weight, the options of the request and a one-line summary."""

from __future__ import annotations

from html import escape

from comclip.app.session import Scored
from comclip.backbones import Backbone
from comclip.declared import declared


def scores_html(scored: Scored) -> str:
    """The scores table: one row per caption, CLIP cosine and ComCLIP score, winners marked.
    Each score cell carries its full-precision value in ``data-value``."""
    clip_best, comclip_best = scored.winners()
    rows = []
    for n, (text, clip, result) in enumerate(zip(scored.texts, scored.clip, scored.results)):
        fallback = escape(result.fallback or ", ".join(result.flags) or "")
        rows.append(
            f'<tr data-caption="{n}"><td class="caption">{escape(text)}</td>'
            f"{_score_cell('clip', clip, n == clip_best)}{_score_cell('comclip', result.score, n == comclip_best)}"
            f'<td class="flags">{fallback}</td></tr>'
        )
    head = f"<tr><th>caption</th><th>CLIP</th><th>{escape(scored.method)}</th><th>fallbacks</th></tr>"
    return f'<table class="comclip-scores"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _score_cell(method: str, value: float, best: bool) -> str:
    mark = " &#9733;" if best else ""
    winner = ' data-winner="true"' if best else ""
    return f'<td class="{method}" data-value="{value!r}"{winner}>{value:.4f}{mark}</td>'


def parses_html(scored: Scored) -> str:
    """Each caption's parse: its entities (head, attributes) and relations."""
    blocks = []
    for n, result in enumerate(scored.results):
        graph = result.graph
        entities = (
            "".join(
                f"<li>[{e.id}] <b>{escape(e.phrase)}</b> (head <i>{escape(e.head)}</i>"
                f"{', attributes ' + escape(', '.join(e.attributes)) if e.attributes else ''})</li>"
                for e in graph.entities
            )
            or "<li>no entities</li>"
        )
        relations = "".join(f"<li>[{r.subject}] {escape(r.predicate)} [{r.object}]</li>" for r in graph.relations)
        blocks.append(
            f'<div class="comclip-parse" data-caption="{n}"><p><b>{n + 1}. {escape(scored.texts[n])}</b></p>'
            f"<ul>{entities}{relations}</ul></div>"
        )
    return "".join(blocks)


def weights_html(scored: Scored) -> str:
    """Every sub-image of every caption: its phrase, similarity s_i and weight w_i."""
    rows = []
    for n, result in enumerate(scored.results):
        for part in result.parts:
            rows.append(
                f'<tr data-caption="{n}"><td>{n + 1}</td><td>{part.kind}</td><td>{escape(part.phrase)}</td>'
                f'<td data-value="{part.similarity!r}">{part.similarity:.4f}</td>'
                f'<td data-value="{part.weight!r}">{part.weight:.4f}</td>'
                f"<td>{escape(', '.join(part.flags))}</td></tr>"
            )
    head = "<tr><th>caption</th><th>kind</th><th>phrase</th><th>s_i</th><th>w_i</th><th>flags</th></tr>"
    body = "".join(rows) or '<tr><td colspan="6">no sub-images: the global image alone was scored</td></tr>'
    return f'<table class="comclip-weights"><thead>{head}</thead><tbody>{body}</tbody></table>'


def config_html(scored: Scored, backbone: Backbone | None = None) -> str:
    """Every option of the request, from the declarations: each
    :class:`~comclip.config.PipelineConfig` field, then how ``backbone`` runs (each
    :class:`~comclip.backbones.runtime.RuntimeOptions` field): its value and what it does."""
    from comclip.backbones.runtime import RuntimeOptions
    from comclip.config import PipelineConfig, defaults

    values = scored.results[0].config.to_dict() if scored.results else defaults()
    if backbone is not None:
        values.update(runtime_values(backbone))
    rows = "".join(
        f'<tr data-option="{name}"><td><code>{name}</code></td><td>{escape(str(values[name]))}</td>'
        f"<td>{escape(option.help)}</td></tr>"
        for cls in (PipelineConfig, RuntimeOptions)
        for name, option in declared(cls).items()
        if name in values
    )
    head = "<tr><th>option</th><th>value</th><th>what it does</th></tr>"
    return f'<table class="comclip-config"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def summary(scored: Scored, model: str) -> str:
    """One line above the tables: which caption each method prefers and how long it took."""
    clip_best, comclip_best = scored.winners()
    agree = "both prefer" if clip_best == comclip_best else "CLIP prefers"
    line = f"{agree} caption {clip_best + 1}"
    if clip_best != comclip_best:
        line += f", ComCLIP prefers caption {comclip_best + 1}"
    return f"**{line}** ({len(scored.texts)} captions, model `{model}`, {scored.seconds:.1f} s)"


def runtime_values(backbone: Backbone) -> dict[str, object]:
    """How ``backbone`` runs, by :class:`~comclip.backbones.runtime.RuntimeOptions` field."""
    from comclip.backbones.runtime import RuntimeOptions

    return {name: getattr(backbone, name) for name in declared(RuntimeOptions) if hasattr(backbone, name)}
