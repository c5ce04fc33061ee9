"""An image's patch embeddings with where each patch lies in the image: what the default
grounder scores candidate regions from, and how the cache stores them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class PatchGrid:
    """An image's patch embeddings (``[rows, cols, D]``, unit norm) and where each patch lies
    in the original image: patch (r, c) covers x in ``[x0 + c * step_x, x0 + (c+1) * step_x)``
    and likewise for y (the encoder saw a resized, centre-cropped view)."""

    embeddings: torch.Tensor
    x0: float
    y0: float
    step_x: float
    step_y: float

    def overlap_weights(self, boxes) -> torch.Tensor:
        """``[len(boxes), rows * cols]``: the area of each patch inside each box."""
        rows, cols = self.embeddings.shape[:2]
        xs = self.x0 + self.step_x * torch.arange(cols + 1, dtype=torch.float64)
        ys = self.y0 + self.step_y * torch.arange(rows + 1, dtype=torch.float64)
        b = torch.tensor([[x.x1, x.y1, x.x2, x.y2] for x in boxes], dtype=torch.float64)
        wx = (torch.minimum(b[:, 2:3], xs[None, 1:]) - torch.maximum(b[:, 0:1], xs[None, :-1])).clamp(min=0)
        wy = (torch.minimum(b[:, 3:4], ys[None, 1:]) - torch.maximum(b[:, 1:2], ys[None, :-1])).clamp(min=0)
        return (wy[:, :, None] * wx[:, None, :]).reshape(len(boxes), rows * cols)

    def pack(self) -> np.ndarray:
        rows, cols, dim = self.embeddings.shape
        header = np.array([rows, cols, dim, self.x0, self.y0, self.step_x, self.step_y], dtype=np.float32)
        return np.concatenate([header, self.embeddings.reshape(-1).numpy().astype(np.float32)])

    @classmethod
    def unpack(cls, vector: np.ndarray) -> PatchGrid:
        rows, cols, dim = (int(v) for v in vector[:3])
        x0, y0, sx, sy = (float(v) for v in vector[3:7])
        return cls(torch.from_numpy(np.array(vector[7:], dtype=np.float32).reshape(rows, cols, dim)), x0, y0, sx, sy)
