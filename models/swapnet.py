"""The swap network: one encoder shared by both people, one decoder per person.

Trained to reconstruct each person through their own decoder, the shared encoder
learns a code of pose and expression that does not depend on who it is; at run time
the user's aligned face goes through the encoder and the *target's* decoder
(``SwapGenerator``, the part exported to ONNX). Sizes come from ``SwapArchitecture``
(models/swap.py).

A *guided* network (``SwapArchitecture.guide``) also takes the sketch of the face's
landmarks in the crop (models/sketch.py's renderer). A shared sketch encoder turns it
into feature maps that every decoder level concatenates, U-Net fashion: the decoder
then draws the eyes and lips where the landmarks put them, instead of recovering them
from an 8x8 bottleneck, which a few thousand CPU steps cannot teach it. Live draws the
user's landmarks moved onto the target's face shape (``SwapGuide``), so the target's
decoder draws the target's shape with the user's expression.

Tensors: faces and sketches (N, 3, S, S) BGR in [-1, 1] (``models.pixels``); masks
(N, 1, S, S) in [0, 1]. The exported generator takes one image, (N, 3, S, S) faces or
(N, 3, S, 2S) for a guided network: the face on the left, its sketch on the right.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.swap import IDENTITIES, SwapArchitecture


def _down(cin: int, cout: int, k: int = 5) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 2, k // 2), nn.LeakyReLU(0.1, inplace=True))


def _up(cin: int, cout: int) -> nn.Sequential:
    """x2 by pixel shuffle (the classic recipe's upscale: no checkerboard from stride overlap)."""
    return nn.Sequential(nn.Conv2d(cin, cout * 4, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True), nn.PixelShuffle(2))


BOTTOM = 8  # the encoder's last feature map is 8x8 whatever the crop size


def _decoder_levels(arch: SwapArchitecture) -> int:
    """Pixel-shuffle steps from the code's 16x16 up to the crop."""
    return int(np.log2(arch.size // (2 * BOTTOM)))


def _sketch_channels(arch: SwapArchitecture) -> list[int]:
    """Channels of the sketch encoder's maps, finest (S/2) first, down to 16x16."""
    return [min(16 * 2**i, arch.width // 2) for i in range(_decoder_levels(arch))]


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


class SketchEncoder(nn.Module):
    """(N, 3, S, S) sketch -> its maps at S/2, S/4, ..., 16 (3x3 strided convolutions),
    finest first, with the sketch itself in front: what the decoder levels concatenate."""

    def __init__(self, arch: SwapArchitecture) -> None:
        super().__init__()
        chans = [3] + _sketch_channels(arch)
        self.down = nn.ModuleList([_down(chans[i], chans[i + 1], 3) for i in range(len(chans) - 1)])

    def forward(self, sketch: torch.Tensor) -> list[torch.Tensor]:
        maps = [sketch]
        for d in self.down:
            maps.append(d(maps[-1]))
        return maps


class SelfAttention(nn.Module):
    """SAGAN's self-attention over a feature map (N, C, H, W) -> the same: every position
    mixes in the features of positions that resemble it; the residual's gain starts at 0,
    so a new block begins as the identity."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.q, self.k = nn.Conv2d(c, max(c // 8, 1), 1), nn.Conv2d(c, max(c // 8, 1), 1)
        self.v = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # (N, HW, C/8)
        k = self.k(x).flatten(2)  # (N, C/8, HW)
        attn = torch.softmax(q @ k, dim=-1)  # (N, HW, HW)
        y = (self.v(x).flatten(2) @ attn.transpose(1, 2)).view(n, c, h, w)
        return x + self.gamma * y


class SwapDecoder(nn.Module):
    """(N, width/2, 16, 16) code [+ the sketch maps] -> face (N, 3, S, S) in [-1, 1]
    and mask (N, 1, S, S) in [0, 1].

    Guided, the finest level is 8 channels wide and the heads 3x3 (16 and 5x5 without a
    sketch): with the sketch concatenated there, that is enough to place the features,
    and the 128x128 layers were two thirds of the network's time (16.9 -> 6.1 ms on
    one slow-class core, measured with ONNX Runtime)."""

    def __init__(self, arch: SwapArchitecture) -> None:
        super().__init__()
        floor, head = (8, 3) if arch.guide else (16, 5)
        skips = ([3] + _sketch_channels(arch))[::-1] if arch.guide else [0] * (_decoder_levels(arch) + 1)
        c, blocks = arch.width // 2, []
        for i in range(_decoder_levels(arch)):
            blocks.append(_up(c + skips[i], max(c // 2, floor)))
            c = max(c // 2, floor)
        self.up = nn.ModuleList(blocks)
        self.attention = SelfAttention(arch.width // 2) if arch.attention else nn.Identity()
        self.face = nn.Sequential(nn.Conv2d(c + skips[-1], 3, head, 1, head // 2), nn.Tanh())
        self.mask = nn.Sequential(nn.Conv2d(c + skips[-1], 1, head, 1, head // 2), nn.Sigmoid())

    def forward(self, code: torch.Tensor, sketch_maps: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        skips = sketch_maps[::-1] if sketch_maps is not None else None  # coarsest (16x16) first
        y = self.attention(code)
        for i, up in enumerate(self.up):
            y = up(y if skips is None else torch.cat([y, skips[i]], 1))
        if skips is not None:
            y = torch.cat([y, skips[-1]], 1)
        return self.face(y), self.mask(y)


class SwapAutoencoder(nn.Module):
    """The shared encoder (and, guided, the shared sketch encoder) and one decoder per
    identity (``IDENTITIES``)."""

    def __init__(self, arch: SwapArchitecture) -> None:
        super().__init__()
        self.arch = arch.check()
        self.encoder = SwapEncoder(arch)
        self.sketch_encoder = SketchEncoder(arch) if arch.guide else None
        self.decoders = nn.ModuleDict({who: SwapDecoder(arch) for who in IDENTITIES})

    def forward(self, x: torch.Tensor, who: str, sketch: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, 3, S, S) faces; ``sketch`` (N, 3, S, S), required by a guided network."""
        if (sketch is None) != (self.sketch_encoder is None):
            raise ValueError("a guided swap network needs the sketch, an unguided one takes none")
        maps = None if sketch is None else self.sketch_encoder(sketch)
        return self.decoders[who](self.encoder(x), maps)


class SwapGenerator(nn.Module):
    """Live's path: the user's aligned face (N, 3, S, S), or for a guided network the
    face and its sketch side by side (N, 3, S, 2S) -> (N, 4, S, S) in [-1, 1]: the
    target's face (3 channels) and its mask (1 channel, 2 * mask - 1). One tensor on
    one scale keeps the engines' contract: they turn it into uint8 levels like any photo."""

    def __init__(self, net: SwapAutoencoder, who: str = "target") -> None:
        super().__init__()
        self.encoder, self.decoder, self.sketch_encoder = net.encoder, net.decoders[who], net.sketch_encoder
        self.size = net.arch.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.size
        maps = None if self.sketch_encoder is None else self.sketch_encoder(x[..., s:])
        face, mask = self.decoder(self.encoder(x[..., :s]), maps)
        return torch.cat([face, mask * 2 - 1], dim=1)


class SwapDiscriminator(nn.Module):
    """Training only (``swap.lambda_gan`` > 0): a small PatchGAN, (N, 3, S, S) masked faces
    -> (N, 1, S/8, S/8) scores, one per overlapping patch: real (1) or drawn (0)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(_down(3, width, 4), _down(width, width * 2, 4), _down(width * 2, width * 4, 4),
                                 nn.Conv2d(width * 4, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
