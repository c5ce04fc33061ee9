"""Open-vocabulary detectors from ``transformers``: OWLv2 and Grounding DINO.

For users who can download their weights (hub ids) or have them in a local directory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from comclip._hf_utils import quiet_transformers
from comclip.errors import ModelNotFoundError
from comclip.grounding.base import Box, Detection, Grounder


def _load(source: str, loader_name: str):
    import transformers

    loader = getattr(transformers, loader_name)
    try:
        with quiet_transformers():
            # a model folder never runs its own code (no remote-code prompt can be answered "y")
            return (
                loader.from_pretrained(source, trust_remote_code=False),
                transformers.AutoProcessor.from_pretrained(source, trust_remote_code=False),
            )
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot load detector {source!r}: {str(exc)[:300]}. Pass a local directory, or download the "
            "model once where the Hugging Face Hub is reachable (HF_HUB_OFFLINE=1 then uses the cache)."
        ) from None


class _DetectorGrounder(Grounder):
    loader_name = ""
    default_source = ""

    def __init__(self, backbone=None, model: str | None = None, threshold: float = 0.1, device=None):
        self.source = model or self.default_source
        self.threshold = threshold
        self.model, self.processor = _load(self.source, self.loader_name)
        self.device = torch.device(device) if device else (backbone.device if backbone is not None else torch.device("cpu"))
        self.model.eval().to(self.device)

    def describe(self) -> dict:
        return {"name": self.name, "model": self.source, "threshold": self.threshold}

    def ground(self, image: Image.Image, queries: Sequence[str], source: str | None = None) -> list[list[Detection]]:
        return [self._detect(image, query) for query in queries]

    def _detect(self, image: Image.Image, query: str) -> list[Detection]:
        raise NotImplementedError


class OWLv2Grounder(_DetectorGrounder):
    """OWLv2 (``google/owlv2-base-patch16-ensemble`` by default)."""

    name = "owlv2"
    loader_name = "Owlv2ForObjectDetection"
    default_source = "google/owlv2-base-patch16-ensemble"

    def _detect(self, image: Image.Image, query: str) -> list[Detection]:
        inputs = self.processor(text=[[f"a photo of a {query}"]], images=image, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        # OWLv2 pads images to a square: post-process against the padded size.
        side = max(image.size)
        post_process = (
            getattr(self.processor, "post_process_grounded_object_detection", None)
            or self.processor.post_process_object_detection
        )  # transformers 5 renamed it
        result = post_process(outputs, threshold=self.threshold, target_sizes=torch.tensor([[side, side]]))[0]
        return _ranked(result["boxes"], result["scores"], query, image.size)


class GroundingDINOGrounder(_DetectorGrounder):
    """Grounding DINO (``IDEA-Research/grounding-dino-tiny`` by default)."""

    name = "grounding-dino"
    loader_name = "AutoModelForZeroShotObjectDetection"
    default_source = "IDEA-Research/grounding-dino-tiny"

    def _detect(self, image: Image.Image, query: str) -> list[Detection]:
        inputs = self.processor(images=image, text=f"{query}.", return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.threshold,
            text_threshold=self.threshold,
            target_sizes=[image.size[::-1]],
        )[0]
        return _ranked(result["boxes"], result["scores"], query, image.size)


def _ranked(boxes, scores, query: str, size: tuple[int, int]) -> list[Detection]:
    detections = []
    for box, score in sorted(zip(boxes.tolist(), scores.tolist()), key=lambda item: -item[1]):
        x1, y1, x2, y2 = box
        candidate = Box(max(0.0, x1), max(0.0, y1), min(float(size[0]), x2), min(float(size[1]), y2))
        if candidate.area > 0:
            detections.append(Detection(boxes=(candidate,), score=float(score), label=query))
    return detections
