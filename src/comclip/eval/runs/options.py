"""How an evaluation runs, declared once: how many examples, how images are decoded, how deep
retrieval re-ranks, how intervals are bootstrapped and how ties are judged. ``evaluate()``'s
keywords, ``comclip eval`` and ``comclip suite``'s flags and a suite file's keys all come from
:class:`EvalOptions`; their defaults from :data:`EVAL`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from comclip.declared import check_all, option
from comclip.eval.benchmarks.kinds import TIE_RULES
from comclip.eval.benchmarks.metrics import RESAMPLES

#: Decoding workers of the command line: one core or more is left to the model (clip_benchmark's default is 4).
DEFAULT_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation runs (see the module docstring). None of these changes a score; the
    ones that change a report (``limit``, ``ties``, the bootstrap) are in its run identity or
    its header."""

    limit: int | None = option("only the first N examples", None, kind="integer", bound="positive", default_text="all")
    workers: int = option(
        "processes decoding image files ahead of the model; 0 decodes in the main process",
        0,
        kind="integer",
        bound="at_least_zero",
        command_default=DEFAULT_WORKERS,
    )
    rerank_top: int = option(
        "retrieval: ComCLIP re-scores CLIP's top K candidates of each query", 10, kind="integer", bound="positive"
    )
    n_bootstrap: int = option(
        "bootstrap resamples for the intervals of non-binary metrics and of the paired differences; 0: no bootstrap intervals",
        RESAMPLES,
        kind="integer",
        bound="at_least_zero",
        flag="--bootstrap",
    )
    bootstrap_seed: int = option("seed of the bootstrap resampling (not of the data)", 0, kind="integer", bound="at_least_zero")
    ties: str = option(
        "a tie between a true and a false option: strict counts it wrong; first counts it right, as an argmax "
        "meeting the true option first does (What'sUp's own code)",
        "strict",
        choices=TIE_RULES,
    )

    def __post_init__(self) -> None:
        check_all(self)

    def as_kwargs(self) -> dict:
        """The options as ``evaluate()``'s keywords."""
        return asdict(self)


#: The defaults every signature that takes an evaluation option uses.
EVAL = EvalOptions()
