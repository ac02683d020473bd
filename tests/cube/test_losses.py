"""The retrieval losses on a case small enough to check by hand.

Two predictions and two targets in 2D (cosines read off directly):
    p0 = (1, 0), p1 = (0, 2) -> unit (0, 1);  t0 = (0.6, 0.8), t1 = (0, 1)
    cos(p0, t0) = 0.6  cos(p0, t1) = 0     cos(p1, t0) = 0.8  cos(p1, t1) = 1
Mined negatives, two per pair:
    pair 0: (0.8, 0.6) cos 0.8, (-1, 0) cos -1;   pair 1: (0, -3) cos -1, (3, 4) cos 0.8
"""
import math

import pytest
import torch

from cube.losses import info_nce_loss, make_loss, spread_penalty, triplet_loss

PRED = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
TARGET = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
NEGATIVES = torch.tensor([[[0.8, 0.6], [-1.0, 0.0]], [[0.0, -3.0], [3.0, 4.0]]])


def test_triplet_with_in_batch_negatives():
    # margin 0.5: anchor 0: max(0, 0.5 - 0.6 + 0) = 0; anchor 1: max(0, 0.5 - 1 + 0.8) = 0.3; mean of 2
    assert triplet_loss(PRED, TARGET, margin=0.5).item() == pytest.approx(0.15, abs=1e-6)


def test_triplet_with_mined_negatives_adds_them_to_the_in_batch_ones():
    # in-batch as above: 0 and 0.3
    # mined, anchor 0: max(0, 0.5 - 0.6 + 0.8) = 0.7, max(0, 0.5 - 0.6 - 1) = 0
    # mined, anchor 1: max(0, 0.5 - 1 - 1) = 0,       max(0, 0.5 - 1 + 0.8) = 0.3
    # mean over all 6 triplets: (0 + 0.3 + 0.7 + 0 + 0 + 0.3) / 6
    assert triplet_loss(PRED, TARGET, margin=0.5, negatives=NEGATIVES).item() == pytest.approx(1.3 / 6, abs=1e-6)


def test_triplet_of_one_pair_without_negatives_is_zero_not_nan():
    assert triplet_loss(PRED[:1], TARGET[:1]).item() == 0.0


def test_info_nce_with_mined_negatives_adds_them_to_the_in_batch_ones():
    # temperature 1: row 0 logits (0.6, 0 | 0.8, -1), row 1 logits (0.8, 1 | -1, 0.8); label = own target
    row0 = -0.6 + math.log(math.exp(0.6) + math.exp(0.0) + math.exp(0.8) + math.exp(-1.0))
    row1 = -1.0 + math.log(math.exp(0.8) + math.exp(1.0) + math.exp(-1.0) + math.exp(0.8))
    got = info_nce_loss(PRED, TARGET, temperature=1.0, negatives=NEGATIVES).item()
    assert got == pytest.approx((row0 + row1) / 2, abs=1e-6)
    assert got == pytest.approx(1.054564, abs=1e-5)
    # without them, only the in-batch targets compete
    plain = ((-0.6 + math.log(math.exp(0.6) + 1.0)) + (-1.0 + math.log(math.exp(0.8) + math.e))) / 2
    assert info_nce_loss(PRED, TARGET, temperature=1.0).item() == pytest.approx(plain, abs=1e-6)


def test_make_loss_passes_negatives_through():
    loss = make_loss("triplet", margin=0.5)
    assert loss(PRED, TARGET, NEGATIVES).item() == pytest.approx(1.3 / 6, abs=1e-6)
    assert make_loss("infonce", temperature=1.0)(PRED, TARGET, None).item() == pytest.approx(0.517813, abs=1e-5)


def test_spread_penalty_is_zero_when_predictions_spread_like_targets_and_positive_when_collapsed():
    torch.manual_seed(0)
    target = torch.randn(64, 8)
    assert spread_penalty(target * 3.0, target).item() == pytest.approx(0.0, abs=1e-6)  # scale does not matter
    collapsed = torch.ones(64, 8) + 1e-4 * torch.randn(64, 8)
    penalty = spread_penalty(collapsed.requires_grad_(), target)
    assert penalty.item() > 0.2
    penalty.backward()
    assert torch.isfinite(collapsed.grad).all() and collapsed.grad.abs().sum() > 0
