"""Compositional image search: an index that stores each image's side once, and a query path
that re-ranks a FAISS shortlist with any method (``clip``, ``comclip``, ``comclip-plus``)
without decoding an image or running an image forward pass.

>>> from comclip.search import Index
>>> index = Index.build(["photos/"], "photos.index", model="comclip/sandbox")
>>> for result in Index.open("photos.index").search("a red circle left of a blue square", top=5):
...     print(result.method, [hit.image for hit in result.hits])

Modules: :mod:`~.sources` (what a build indexes), :mod:`~.side` (what is stored per image),
:mod:`~.layout` (the folder on disk), :mod:`~.build` (parts, resume, FAISS),
:mod:`~.stored_images` and :mod:`~.query` (the query side), :mod:`~.index` (the API).
"""

from comclip.search.index import DEFAULT_METHODS, Index
from comclip.search.query import settle
from comclip.search.results import Hit, SearchResult

__all__ = ["DEFAULT_METHODS", "Hit", "Index", "SearchResult", "settle"]
