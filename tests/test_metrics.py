import numpy as np
import torch

from gkd.metrics import confusion, iou_from_confusion


def brute_force_miou(pred, label, k):
    ious = []
    for c in range(k):
        valid = label != 255
        inter = np.sum((pred == c) & (label == c) & valid)
        union = np.sum(((pred == c) | (label == c)) & valid)
        if union:
            ious.append(inter / union)
    return 100 * np.mean(ious)


def test_miou_matches_brute_force_with_ignore_and_absent_classes():
    rng = np.random.default_rng(0)
    k = 6
    label = rng.integers(0, 4, (3, 20, 20))        # classes 4 and 5 never in the truth
    label[:, :3] = 255                              # ignore band
    pred = rng.integers(0, 5, (3, 20, 20))         # class 5 never predicted either: excluded
    conf = confusion(torch.from_numpy(pred), torch.from_numpy(label), k).numpy()
    miou, per_class = iou_from_confusion(conf)
    assert per_class[5] is None and per_class[4] == 0.0
    assert abs(miou - brute_force_miou(pred, label, k)) < 1e-9
    assert conf.sum() == np.sum(label != 255)


def test_perfect_prediction_is_100_and_whole_split_pooling():
    label = torch.tensor([[0, 0, 1], [1, 2, 255]])
    miou, _ = iou_from_confusion(confusion(label.clamp(max=2), label, 3).numpy())
    assert miou == 100.0
    # mIoU from a confusion matrix summed over images differs from the mean of per-image mIoUs
    a, b = torch.tensor([[0, 0, 0, 1]]), torch.tensor([[1, 1, 1, 1]])
    pa, pb = torch.tensor([[0, 0, 0, 0]]), torch.tensor([[1, 1, 1, 1]])
    pooled, _ = iou_from_confusion((confusion(pa, a, 2) + confusion(pb, b, 2)).numpy())
    assert abs(pooled - 100 * (3 / 4 + 4 / 5) / 2) < 1e-9


def test_label_outside_class_set_is_rejected():
    import pytest
    with pytest.raises(ValueError, match=r"label values \[7\] outside the 3 classes"):
        confusion(torch.tensor([0, 1]), torch.tensor([0, 7]), 3)
