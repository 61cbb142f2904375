"""PatchGAN discriminator (pix2pix), optionally multi-scale (pix2pixHD).

Input (N, 6, H, W): sketch and photo concatenated on channels, both in [-1, 1].
Each scale returns its intermediate features and its final (N, 1, h, w) patch map;
with n_layers=3 each output element sees a 70x70 patch of its input. Scale k sees the
input average-pooled k times, so it judges coarser structure.
"""
from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))]
        ch = ndf
        for i in range(1, n_layers + 1):
            nxt = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            blocks.append(nn.Sequential(nn.Conv2d(ch, nxt, 4, stride, 1, bias=False), nn.BatchNorm2d(nxt), nn.LeakyReLU(0.2, inplace=True)))
            ch = nxt
        blocks.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of every block; the last element is the patch map."""
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, scales: int = 1) -> None:
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers) for _ in range(scales))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = self.pool(x)
            out.append(d(x))
        return out
