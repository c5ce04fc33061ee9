"""``comclip app``: a web page that shows ComCLIP at work.

Drop an image (or pick a bundled example), type captions, choose the weighting, fill, score
mode and grounder, and see CLIP against ComCLIP per caption with the parse, the weights and
the explanation figure of each. The model loads once; each request goes through the same
:class:`~comclip.pipeline.ComCLIP` pipeline and embedding cache as ``comclip score``.

:mod:`.session` holds everything but the page (testable without Gradio); :mod:`.page`
lays the page out with Gradio (the optional extra ``comclip[app]``).
"""

from comclip.app.examples import bundled_examples
from comclip.app.session import AppSession, Scored

__all__ = ["AppSession", "Scored", "bundled_examples"]
