import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from harness.components.losses import class_weights, focal_loss, multilabel_loss, positive_weights


def _batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(64, 5, generator=gen) * 3
    labels = (torch.rand(64, 5, generator=gen) < torch.tensor([0.05, 0.2, 0.5, 0.8, 0.3])).float()
    return logits, labels


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (0.0, -1.0), (1.5, 0.6), (3.0, -1.0)])
def test_focal_loss_equals_torchvision(gamma, alpha):
    logits, labels = _batch()
    expected = sigmoid_focal_loss(logits, labels, alpha=alpha, gamma=gamma, reduction="mean")
    torch.testing.assert_close(focal_loss(logits, labels, gamma, alpha), expected)
    torch.testing.assert_close(multilabel_loss("focal", logits, labels, gamma=gamma, alpha=alpha), expected)


def test_focal_loss_without_focusing_or_alpha_is_plain_cross_entropy():
    logits, labels = _batch(1)
    torch.testing.assert_close(
        focal_loss(logits, labels, 0.0, -1.0), F.binary_cross_entropy_with_logits(logits, labels)
    )


def test_positive_weights_are_negatives_over_positives_and_weigh_the_positive_term():
    labels = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=torch.float32)
    weights = positive_weights(labels)
    torch.testing.assert_close(weights, torch.tensor([3.0, 1.0, 1 / 3]))  # no positive: 1
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    by_hand = -(weights * labels * F.logsigmoid(logits) + (1 - labels) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(multilabel_loss("bce-weighted", logits, labels, weights), by_hand)
    with pytest.raises(ValueError, match="bce-weighted needs weights"):
        multilabel_loss("bce-weighted", logits, labels)


def test_focal_weighted_scales_each_finding_by_its_inverse_prevalence():
    logits, labels = _batch(3)
    weights = class_weights(labels)
    prevalence = labels.mean(0)
    expected_weights = (1 / prevalence) / (1 / prevalence).mean()
    torch.testing.assert_close(weights, expected_weights)
    per_finding = torch.stack(
        [sigmoid_focal_loss(logits[:, k], labels[:, k], alpha=0.25, gamma=2.0, reduction="mean") for k in range(5)]
    )
    expected = (per_finding * weights).mean()  # equal batch sizes: the mean of weighted column means
    torch.testing.assert_close(multilabel_loss("focal-weighted", logits, labels, weights, 2.0, 0.25), expected)
    with pytest.raises(ValueError, match="focal-weighted needs weights"):
        multilabel_loss("focal-weighted", logits, labels)
