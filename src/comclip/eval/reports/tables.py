"""Markdown table pieces shared by the reports."""

from __future__ import annotations


def row(cells: list) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def cell(metric: dict) -> str:
    """A metric in percent with its 95% interval, where it has one."""
    if not metric.get("ci95"):
        return f"{metric['value']:.2f}"
    lo, hi = metric["ci95"]
    return f"{metric['value']:.2f} [{lo:.1f}, {hi:.1f}]"
