"""What a search returns: per query and method, the ranked hits."""

from __future__ import annotations

from dataclasses import dataclass, field

from comclip.results import ComCLIPResult


@dataclass(frozen=True)
class Hit:
    """One image in a ranking: its place, path as indexed, the method's score and CLIP's cosine;
    ``result`` holds a composed method's parts (phrases, boxes, s_i, w_i, flags)."""

    rank: int
    image: str
    score: float
    clip: float
    row: int
    result: ComCLIPResult | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        return {"rank": self.rank, "image": self.image, "score": self.score, "clip": self.clip}


@dataclass(frozen=True)
class SearchResult:
    """The top hits of one query under one method. ``computed`` counts the sub-images the index
    did not hold and that were encoded for this query; ``decoded`` the image files read."""

    query: str
    method: str
    hits: list[Hit]
    candidates: int
    computed: int = 0
    decoded: int = 0

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "method": self.method,
            "results": [h.to_dict() for h in self.hits],
            "candidates": self.candidates,
            "computed": self.computed,
            "decoded": self.decoded,
        }
