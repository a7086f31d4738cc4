"""Discrete shift augmentation: every training example has (2s+1)^2 views (integer pixel shifts).

Because the set of views is finite, the teacher's outputs can be cached per (view, example)
and stay exact under augmentation.
"""
from __future__ import annotations

import torch


class ShiftViews:
    """The (2s+1)^2 shifted views of every training image; non-image inputs (N, F) have one view."""

    def __init__(self, x: torch.Tensor, shift: int):
        self.flat = x.ndim != 4  # feature vectors: nothing to shift, the identity is the only view
        self.shift = 0 if self.flat else int(shift)
        self.n_views = (2 * self.shift + 1) ** 2
        s = self.shift
        if self.flat:
            self.padded = x
            return
        n, c, h, w = x.shape
        self.h, self.w = h, w
        # pad with each image's background (its minimum), so a shift moves the digit, not the frame
        bg = x.amin(dim=(1, 2, 3), keepdim=True)
        self.padded = bg.expand(n, c, h + 2 * s, w + 2 * s).clone()
        self.padded[:, :, s:s + h, s:s + w] = x

    def offsets(self, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column offsets into the padded images of each view index."""
        side = 2 * self.shift + 1
        return view // side, view % side  # row and column offsets into the padded image

    def get(self, idx: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Images ``idx`` under views ``view`` (both 1-D long tensors of the same length)."""
        if self.flat:
            return self.padded[idx]
        dy, dx = self.offsets(view)
        rows = dy[:, None] + torch.arange(self.h)[None, :]  # (B, H)
        cols = dx[:, None] + torch.arange(self.w)[None, :]  # (B, W)
        out = self.padded[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        return out.permute(0, 3, 1, 2).contiguous()

    def all_views(self, view: int) -> torch.Tensor:
        """Every training image under view ``view``."""
        n = self.padded.shape[0]
        return self.get(torch.arange(n), torch.full((n,), view, dtype=torch.long))

    @property
    def identity_view(self) -> int:
        """The view index of the unshifted image."""
        return self.n_views // 2
