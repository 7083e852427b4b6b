"""augment_batch: per-sample random crop and flip in one batched gather."""

import pytest
import torch
import torch.nn.functional as F

from lpc_engine.data.augment import augment_batch


def _distinct(n: int, c: int = 2, h: int = 5, w: int = 6) -> torch.Tensor:
    """(n, c, h, w) with every value distinct and nonzero, so crops are identifiable."""
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).view(n, c, h, w)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_no_padding_no_flip_is_identity():
    x = _distinct(4)
    assert augment_batch(x, 0, False, _gen()) is x


def test_flat_inputs_are_returned_unchanged():
    x = torch.randn(7, 10)
    assert augment_batch(x, 4, True, _gen()) is x


def test_flip_only_gives_each_sample_itself_or_its_mirror_and_both_occur():
    x = _distinct(64)
    out = augment_batch(x, 0, True, _gen())
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    # With 64 fair coin flips, all-heads or all-tails has probability 2^-63.
    assert 0 < int(mirrored.sum()) < 64


def _crops(x: torch.Tensor, p: int) -> list[torch.Tensor]:
    """All (2p+1)^2 zero-padded crops of one (C, H, W) image."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (p, p, p, p))
    return [xp[:, i : i + h, j : j + w] for i in range(2 * p + 1) for j in range(2 * p + 1)]


def test_crop_is_a_shifted_copy_with_zeros_entering_from_the_edge():
    p = 2
    x = _distinct(32)
    out = augment_batch(x, p, False, _gen(3))
    offsets = []
    for k in range(len(x)):
        matches = [i for i, crop in enumerate(_crops(x[k], p)) if torch.equal(crop, out[k])]
        assert len(matches) == 1, f"sample {k} is not a padded crop of its input"
        offsets.append(matches[0])
    # Offsets are drawn per sample: 32 draws from 25 offsets are not all equal.
    assert len(set(offsets)) > 1


def test_crop_and_flip_together_give_a_crop_of_the_input_or_its_mirror():
    p = 1
    x = _distinct(16)
    out = augment_batch(x, p, True, _gen(5))
    for k in range(len(x)):
        candidates = _crops(x[k], p) + _crops(x[k].flip(-1), p)
        assert any(torch.equal(c, out[k]) for c in candidates)


def test_per_channel_fill_sets_the_border():
    x = torch.zeros(3, 2, 4, 4)
    out = augment_batch(x, 4, False, _gen(), fill=[-1.0, -2.0])
    # Padding 4 on a 4x4 image: only offset (4, 4) keeps any of the image, so
    # every other crop has border values; each channel shows only its own fill.
    for ch, value in enumerate([-1.0, -2.0]):
        assert set(out[:, ch].unique().tolist()) <= {0.0, value}


def test_same_generator_seed_gives_same_output():
    x = torch.randn(16, 3, 8, 8)
    a = augment_batch(x, 2, True, _gen(7))
    b = augment_batch(x, 2, True, _gen(7))
    c = augment_batch(x, 2, True, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_output_keeps_shape_dtype_and_leaves_input_untouched():
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    before = x.clone()
    out = augment_batch(x, 3, True, _gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)


def test_negative_padding_is_rejected():
    with pytest.raises(ValueError, match="padding"):
        augment_batch(torch.zeros(1, 1, 2, 2), -1, False, _gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_the_crop_contract():
    x = _distinct(8).cuda()
    out = augment_batch(x, 2, True, torch.Generator(device="cuda").manual_seed(0))
    assert out.device == x.device
    for k in range(len(x)):
        xk = x[k].cpu()
        candidates = _crops(xk, 2) + _crops(xk.flip(-1), 2)
        assert any(torch.equal(c, out[k].cpu()) for c in candidates)
