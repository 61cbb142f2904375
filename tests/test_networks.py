"""Generator and discriminator shapes, and the PatchGAN's 70x70 receptive field."""
from __future__ import annotations

import pytest
import torch

from models.patchgan import MultiScaleDiscriminator, PatchDiscriminator
from models.config import ModelConfig
from models.unet import UNetGenerator, count_parameters


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("hw", [(64, 64), (64, 128), (128, 64)])
def test_generator_keeps_shape_and_range_for_any_aspect(upsample, hw):
    g = UNetGenerator(ModelConfig(ngf=8, depth=6, upsample=upsample)).eval()
    y = g(torch.randn(2, 3, *hw) * 3)
    assert y.shape == (2, 3, *hw) and y.dtype == torch.float32
    assert y.abs().max() <= 1.0


def test_generator_rejects_sizes_it_cannot_halve():
    g = UNetGenerator(ModelConfig(ngf=8, depth=6))
    with pytest.raises(ValueError, match="divisible by 64"):
        g(torch.zeros(1, 3, 96, 64))


def test_unet_256_matches_pix2pix_size():
    # pix2pix's unet_256 (ngf 64, 8 levels) has 54.4 M parameters.
    assert count_parameters(UNetGenerator(ModelConfig(ngf=64, depth=8))) == pytest.approx(54.4e6, rel=0.01)


def test_dropout_only_in_training_mode():
    g = UNetGenerator(ModelConfig(ngf=8, depth=6, dropout=0.5))
    x = torch.randn(1, 3, 64, 64)
    g.eval()
    assert torch.equal(g(x), g(x))
    g.train()
    assert not torch.equal(g(x), g(x))


def test_patchgan_sees_70x70_patches():
    d = PatchDiscriminator(6, ndf=8, n_layers=3).eval()
    x = torch.zeros(1, 6, 256, 256, requires_grad=True)
    out = d(x)[-1]
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)))
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)))
    assert int(rows.max() - rows.min() + 1) == 70 and int(cols.max() - cols.min() + 1) == 70


def test_multiscale_discriminator_judges_coarser_scales():
    d = MultiScaleDiscriminator(6, ndf=8, scales=3)
    outs = d(torch.randn(2, 6, 128, 128))
    assert len(outs) == 3
    sizes = [o[-1].shape[-1] for o in outs]
    assert sizes[0] > sizes[1] > sizes[2]
    assert all(o[-1].shape[:2] == (2, 1) for o in outs)


def test_icnr_starts_as_resize_convolution_at_four_ninths_of_the_cost():
    """An "icnr" up-block is a transposed convolution that, as initialised, computes
    exactly nearest-neighbour x2 followed by a 3x3 convolution: no checkerboard at the
    start, 4 instead of 9 taps per output pixel."""
    import torch
    from torch import nn

    from models.unet import _NN_TO_TRANSPOSED, _up

    torch.manual_seed(3)
    up = _up(5, 4, "icnr")
    resize = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(5, 4, 3, 1, 1, bias=False))
    # The resize block that this transposed one equals: recover its 3x3 kernel by least squares.
    p = torch.linalg.pinv(_NN_TO_TRANSPOSED)  # (3, 4)
    resize[1].weight.data = torch.einsum("au,couv,bv->ocab", p, up.weight.data, p)  # (cout, cin, 3, 3)
    x = torch.randn(2, 5, 9, 7)
    assert torch.allclose(up(x), resize(x), atol=1e-5)
    g = UNetGenerator(ModelConfig(ngf=8, depth=6, upsample="icnr"))
    assert g(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("stored_4x4", [False, True])
@pytest.mark.parametrize("upsample", ["resize", "icnr", "transpose"])
def test_the_inference_form_computes_the_trained_function(upsample, stored_4x4):
    """``for_inference`` (what export turns into ONNX) gives the trained generator's output
    to float precision, with up-blocks that are transposed convolutions carrying their
    BatchNorm, whatever the up-sampling it was trained with; the trained one is untouched."""
    from torch import nn

    from models.unet import NearestUpConv, for_inference

    torch.manual_seed(7)
    g = UNetGenerator(ModelConfig(ngf=6, depth=5, upsample=upsample))
    for m in g.modules():  # BatchNorm statistics far from the identity, so a wrong fold shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.3, 3), m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)
    g.eval()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    f = for_inference(g, stored_4x4=stored_4x4)
    x = torch.randn(3, 3, 64, 96) * 2
    with torch.no_grad():
        assert (f(x) - g(x)).abs().max() < 1e-5
    up_modules = [m for block in f.up for m in block.modules()]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in up_modules)
    assert sum(isinstance(m, (nn.ConvTranspose2d, NearestUpConv)) for m in up_modules) == 5
    assert not (stored_4x4 and any(isinstance(m, NearestUpConv) for m in up_modules))
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())


def test_the_resize_block_is_nearest_then_conv_in_value_gradient_and_layout():
    """``NearestUpConv`` computes nearest x2 + 3x3 convolution as a transposed
    convolution: the same output, the same gradients for its kernel and its input, and
    the same state-dict keys, so checkpoints of the plain form load into it."""
    from torch import nn

    from models.unet import NearestUpConv

    torch.manual_seed(5)
    block = NearestUpConv(6, 5)
    block[1].bias = nn.Parameter(torch.randn(5))
    plain = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(6, 5, 3, 1, 1))
    assert set(plain.state_dict()) == set(block.state_dict())
    plain.load_state_dict(block.state_dict())
    x1 = torch.randn(2, 6, 7, 9, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    target = torch.randn(2, 5, 14, 18)
    y1, y2 = block(x1), plain(x2)
    assert torch.allclose(y1, y2, atol=1e-5)
    ((y1 - target) ** 2).sum().backward()
    ((y2 - target) ** 2).sum().backward()
    assert torch.allclose(block[1].weight.grad, plain[1].weight.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(block[1].bias.grad, plain[1].bias.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-4)
