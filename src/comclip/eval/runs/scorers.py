"""The two scorers every evaluation compares: plain CLIP and a ComCLIP pipeline, both able to
score many examples in one batched pass (see :class:`PairScorer`)."""

from __future__ import annotations

from comclip.similarity import cosines


class PairScorer:
    """A scorer of (images, texts) groups: ``scorer(images, texts)`` gives one ``[images,
    texts]`` matrix; :meth:`batch` scores many groups at once (batched encodings). The
    default :meth:`batch` just loops, so any callable can be wrapped."""

    def __init__(self, one, many=None, texts=None):
        self._one, self._many, self._texts = one, many, texts

    def __call__(self, images, texts):
        return self._one(images, texts)

    def batch(self, groups):
        return self._many(groups) if self._many is not None else [self._one(im, tx) for im, tx in groups]

    def text_similarity(self, texts):
        """``[texts, texts]`` cosines of the text side, for text-only metrics; None without one."""
        return None if self._texts is None else self._texts(texts)


def _images(group) -> list:
    """A group's images as given: a decoded one keeps its digest for the embedding cache."""
    return list(group)


def clip_scorer(backbone) -> PairScorer:
    """Cosine similarity of the backbone's global embeddings."""

    def one(images, texts):
        return backbone.similarity(_images(images), texts).numpy()

    def many(groups):
        images = [im for group, _ in groups for im in _images(group)]
        texts = [t for _, group_texts in groups for t in group_texts]
        similarity = cosines(backbone.encode_images(images), backbone.encode_texts(texts)).numpy()
        out, i, j = [], 0, 0
        for group_images, group_texts in groups:
            out.append(similarity[i : i + len(group_images), j : j + len(group_texts)])
            i, j = i + len(group_images), j + len(group_texts)
        return out

    return PairScorer(one, many, texts=text_similarity(backbone))


def comclip_scorer(model) -> PairScorer:
    """A :class:`comclip.pipeline.ComCLIP`'s scores (its score mode, weighting, fill, grounder),
    each with the fallbacks its pairs took (``{flag: pairs}``) and its results, from which the
    runner records the flags and a diagnosis (see :mod:`comclip.eval.reports.diagnosis`)."""

    return PairScorer(
        lambda images, texts: model.score_groups([(images, texts)])[0],
        model.score_groups,
        texts=text_similarity(model.backbone),
    )


def text_similarity(backbone):
    """Cosines between captions by the backbone's text side, which ComCLIP leaves as CLIP's:
    SugarCrepe++'s text-only metric is the same for both methods by construction."""

    def texts(captions):
        embeddings = backbone.encode_texts(list(captions))
        return cosines(embeddings, embeddings).numpy()

    return texts
