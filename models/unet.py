"""pix2pix U-Net generator: sketch -> photo of the target.

Input  (N, 3, H, W): the sketch, BGR, float32 or float16, scaled to [-1, 1].
Output (N, 3, H, W): the photo, BGR, same dtype, in [-1, 1] (tanh).
H and W must be multiples of 2**depth (``models.framing.output_size`` rounds to that),
so any aspect ratio works.

Encoder: ``depth`` stride-2 4x4 convolutions, widths ngf·(1, 2, 4, 8, 8, ...).
Decoder: mirror image with skip connections; dropout in the three innermost decoder
blocks as in pix2pix. ``upsample="resize"`` uses nearest-neighbour x2 + 3x3 conv,
which avoids the checkerboard artifacts of transposed convolutions; it is computed as
the transposed convolution it equals (``NearestUpConv``), at 4/9 of the multiply-adds.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from models.config import ModelConfig

ARCHITECTURE_KEYS = ("ngf", "depth", "dropout", "upsample")  # what model.json's "generator" records
UPSAMPLE = ("transpose", "resize", "icnr")


def architecture(cfg: ModelConfig) -> dict:
    """The generator's architecture as recorded in model.json and checkpoints."""
    return {k: getattr(cfg, k) for k in ARCHITECTURE_KEYS}


def from_architecture(record: dict, size: int = 256) -> ModelConfig:
    """A ModelConfig from a recorded architecture (untrusted: ValueError when it is not one)."""
    if not isinstance(record, dict) or set(record) != set(ARCHITECTURE_KEYS):
        raise ValueError(f"a generator record has exactly {', '.join(ARCHITECTURE_KEYS)}; got {record!r}")
    try:
        cfg = ModelConfig(size=int(size), ngf=int(record["ngf"]), depth=int(record["depth"]), dropout=float(record["dropout"]),
                          upsample=str(record["upsample"]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"a generator record holds a wrong type: {e}") from None
    _check(cfg)
    return cfg


def _check(cfg: ModelConfig) -> None:
    if cfg.depth < 3 or cfg.ngf < 1 or cfg.upsample not in UPSAMPLE or not 0 <= cfg.dropout < 1:
        raise ValueError(f"invalid generator architecture {architecture(cfg)}")


def _width(ngf: int, level: int) -> int:
    return ngf * min(2**level, 8)


# Nearest-neighbour x2 followed by a 3x3 convolution K is exactly a 4x4 stride-2
# transposed convolution with weights A K A^T (per input and output channel): each output
# pixel's phase sees 2 input pixels per axis, with the taps of K that land on them.
_NN_TO_TRANSPOSED = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.float32)


def transposed_weights(kernel: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
    """(cout, cin, 3, 3) kernel of nearest x2 + 3x3 conv -> (cin, cout, 4, 4) weights of the
    stride-2 transposed convolution it equals (``a``: ``_NN_TO_TRANSPOSED`` on the kernel's
    device and dtype). MatMuls, so it also traces cleanly into ONNX."""
    a = _NN_TO_TRANSPOSED.to(kernel) if a is None else a
    return (a @ kernel @ a.T).transpose(0, 1)


class NearestUpConv(nn.Sequential):
    """The "resize" up-block: nearest-neighbour x2, then a 3x3 convolution (no
    checkerboard), computed as the 4x4 stride-2 transposed convolution it equals.

    Why: 4 taps per output pixel instead of 9, forward and backward, for the same function
    and the same gradients (a training step of the cpu preset's generator, batch 4:
    173 -> 61 ms on one machine). The children keep the plain form's layout ([0] Upsample,
    [1] Conv2d), so checkpoints of either load into the other; [0] is never called. The
    4x4 weights are derived from [1]'s 3x3 kernel inside ``forward``: an ONNX file exported
    without constant folding stores the 9 weights per channel pair, and ONNX Runtime folds
    them into 16 once, when it builds the session."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
        self.register_buffer("nn_to_transposed", _NN_TO_TRANSPOSED.clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[1]
        weight = transposed_weights(conv.weight, self.nn_to_transposed.to(conv.weight.dtype))  # (cin, cout, 4, 4)
        return nn.functional.conv_transpose2d(x, weight, conv.bias, stride=2, padding=1)


def _up(cin: int, cout: int, mode: str) -> nn.Module:
    """x2 upsampling: "transpose" (pix2pix), "resize" (nearest + 3x3 conv: no
    checkerboard, 9 weights per channel pair, computed as 4 taps per output pixel by
    ``NearestUpConv``), or "icnr": a free 4x4 transposed convolution (16 weights)
    initialised to equal "resize", so it starts without checkerboard."""
    if mode == "transpose":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
    if mode == "icnr":
        up = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
        k = nn.Conv2d(cin, cout, 3, 1, 1, bias=False).weight.data  # (cout, cin, 3, 3), the resize path's own init
        up.weight.data = transposed_weights(k).contiguous()
        return up
    return NearestUpConv(cin, cout)


class UNetGenerator(nn.Module):
    """``cfg``: the [model] section (its ``size`` is the input's, not the network's)."""

    def __init__(self, cfg: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        _check(cfg)
        self.cfg = cfg
        d, ngf = cfg.depth, cfg.ngf
        widths = [_width(ngf, i) for i in range(d)]
        self.down = nn.ModuleList()
        for i in range(d):
            cin = 3 if i == 0 else widths[i - 1]
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, inplace=True)]
            layers.append(nn.Conv2d(cin, widths[i], 4, 2, 1, bias=i in (0, d - 1)))
            if 0 < i < d - 1:  # no norm on the input layer, nor on the 1x1 bottleneck
                layers.append(nn.BatchNorm2d(widths[i]))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for i in reversed(range(d)):
            cin = widths[i] if i == d - 1 else widths[i] * 2  # skip concat below the bottleneck
            if i == 0:
                layers = [nn.ReLU(inplace=True), _up(cin, 3, cfg.upsample), nn.Tanh()]
                if cfg.upsample == "resize":
                    layers[1][1].bias = nn.Parameter(torch.zeros(3))  # type: ignore[index]
                else:
                    layers[1].bias = nn.Parameter(torch.zeros(3))  # type: ignore[union-attr]
            else:
                layers = [nn.ReLU(inplace=True), _up(cin, widths[i - 1], cfg.upsample), nn.BatchNorm2d(widths[i - 1])]
                if cfg.dropout > 0 and i >= d - 3:
                    layers.append(nn.Dropout(cfg.dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2**self.cfg.depth
        if not torch.jit.is_tracing() and (x.shape[-1] % m or x.shape[-2] % m):
            raise ValueError(f"UNetGenerator(depth={self.cfg.depth}) needs H and W divisible by {m}, got {tuple(x.shape[-2:])}")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the first up block directly
        for block in self.up:
            x = block(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return x


def for_inference(g: UNetGenerator, *, stored_4x4: bool = False) -> UNetGenerator:
    """An eval-only copy of ``g`` that computes the same function with less work; what
    ``export`` turns into ONNX. ``g`` itself is left as it is.

    Why: a BatchNorm after an up-block's convolution is exactly a per-channel scale and
    shift of its weights, which ONNX Runtime does not fold by itself after a transposed
    convolution (every up-block is one in the graph: ``NearestUpConv``). The copy's
    up-blocks carry their BatchNorm in their weights and bias; the down-blocks are
    unchanged (ONNX Runtime folds a BatchNorm after an ordinary convolution).
    ``stored_4x4``: resize up-blocks become plain transposed convolutions holding their
    4x4 weights (a bigger file, nothing to derive at load: the fp16 export, whose MatMuls
    ONNX Runtime's CPU cannot fold)."""
    out = copy.deepcopy(g).eval()
    with torch.no_grad():
        for block in out.up:
            conv = block[1][1] if g.cfg.upsample == "resize" else block[1]
            weight = conv.weight.clone()  # resize: (cout, cin, 3, 3); transposed: (cin, cout, 4, 4)
            out_axis = 0 if g.cfg.upsample == "resize" else 1
            bias = conv.bias.clone() if conv.bias is not None else weight.new_zeros(weight.shape[out_axis])
            if isinstance(block[2], nn.BatchNorm2d):
                bn = block[2]
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                weight = weight * scale.reshape([-1 if i == out_axis else 1 for i in range(4)])
                bias = (bias - bn.running_mean) * scale + bn.bias
                block[2] = nn.Identity()
            conv.weight = nn.Parameter(weight.contiguous())
            conv.bias = nn.Parameter(bias)
            if stored_4x4 and g.cfg.upsample == "resize":
                plain = nn.ConvTranspose2d(weight.shape[1], weight.shape[0], 4, 2, 1)
                plain.weight = nn.Parameter(transposed_weights(weight).contiguous())
                plain.bias = nn.Parameter(bias)
                block[1] = plain
    return out.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
