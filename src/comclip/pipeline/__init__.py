"""ComCLIP end to end (:mod:`comclip.pipeline.model`), and what it remembers between runs: the
grounders' rankings and the parses, kept in the persistent cache (:mod:`comclip.pipeline.memory`)."""

from comclip.pipeline.model import ComCLIP

__all__ = ["ComCLIP"]
