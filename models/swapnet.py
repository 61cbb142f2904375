"""The swap network: one encoder shared by both people, one decoder per person.

Trained to reconstruct each person through their own decoder, the shared encoder
learns a code of pose and expression that does not depend on who it is; at run time
the user's aligned face goes through the encoder and the *target's* decoder
(``SwapGenerator``, the part exported to ONNX). Sizes come from ``SwapArchitecture``
(models/swap.py).

Tensors: faces (N, 3, S, S) BGR in [-1, 1] (``models.pixels``); masks (N, 1, S, S) in [0, 1].
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.swap import IDENTITIES, SwapArchitecture


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 5, 2, 2), nn.LeakyReLU(0.1, inplace=True))


def _up(cin: int, cout: int) -> nn.Sequential:
    """x2 by pixel shuffle (the classic recipe's upscale: no checkerboard from stride overlap)."""
    return nn.Sequential(nn.Conv2d(cin, cout * 4, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True), nn.PixelShuffle(2))


BOTTOM = 8  # the encoder's last feature map is 8x8 whatever the crop size


class SwapEncoder(nn.Module):
    """(N, 3, S, S) aligned face -> (N, width/2, 16, 16) code: strided 5x5 convolutions
    down to 8x8, a dense bottleneck of ``latent`` (it forgets the identity's details
    that the decoders must supply), then one pixel-shuffle up."""

    def __init__(self, arch: SwapArchitecture) -> None:
        super().__init__()
        w, levels = arch.width, int(np.log2(arch.size // BOTTOM))
        chans = [3] + [w // 2 ** (levels - 1 - i) for i in range(levels)]  # e.g. 32, 64, 128, 256
        self.down = nn.Sequential(*[_down(chans[i], chans[i + 1]) for i in range(levels)])
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(w * BOTTOM * BOTTOM, arch.latent),
                                   nn.Linear(arch.latent, w * BOTTOM * BOTTOM))
        self.up = _up(w, w // 2)
        self.width = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(self.down(x)).view(-1, self.width, BOTTOM, BOTTOM)
        return self.up(y)


class SwapDecoder(nn.Module):
    """(N, width/2, 16, 16) code -> face (N, 3, S, S) in [-1, 1] and mask (N, 1, S, S) in [0, 1]."""

    def __init__(self, arch: SwapArchitecture) -> None:
        super().__init__()
        c, blocks = arch.width // 2, []
        for _ in range(int(np.log2(arch.size // (2 * BOTTOM)))):
            blocks.append(_up(c, max(c // 2, 16)))
            c = max(c // 2, 16)
        self.up = nn.Sequential(*blocks)
        self.face = nn.Sequential(nn.Conv2d(c, 3, 5, 1, 2), nn.Tanh())
        self.mask = nn.Sequential(nn.Conv2d(c, 1, 5, 1, 2), nn.Sigmoid())

    def forward(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.up(code)
        return self.face(y), self.mask(y)


class SwapAutoencoder(nn.Module):
    """The shared encoder and one decoder per identity (``IDENTITIES``)."""

    def __init__(self, arch: SwapArchitecture) -> None:
        super().__init__()
        self.arch = arch.check()
        self.encoder = SwapEncoder(arch)
        self.decoders = nn.ModuleDict({who: SwapDecoder(arch) for who in IDENTITIES})

    def forward(self, x: torch.Tensor, who: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoders[who](self.encoder(x))


class SwapGenerator(nn.Module):
    """Live's path: the user's aligned face -> (N, 4, S, S) in [-1, 1]: the target's
    face (3 channels) and its mask (1 channel, 2 * mask - 1). One tensor on one scale
    keeps the engines' contract: they turn it into uint8 levels like any photo."""

    def __init__(self, net: SwapAutoencoder, who: str = "target") -> None:
        super().__init__()
        self.encoder, self.decoder = net.encoder, net.decoders[who]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        face, mask = self.decoder(self.encoder(x))
        return torch.cat([face, mask * 2 - 1], dim=1)
