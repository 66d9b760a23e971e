import numpy as np
import torch
import pytest

from gkd.data import synthetic as syn


def test_render_is_deterministic_per_key():
    a_img, a_lab = syn.render("night", (0, 1, 5), 64)
    b_img, b_lab = syn.render("night", (0, 1, 5), 64)
    c_img, c_lab = syn.render("night", (0, 1, 6), 64)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, c_lab)
    assert a_img.dtype == np.uint8 and a_img.shape == (64, 64, 3) and a_lab.shape == (64, 64)


def test_domains_share_geometry_but_not_appearance():
    labels = {d: syn.render(d, (0, 1, 3), 64)[1] for d in syn.DOMAINS}
    for d in syn.DOMAINS:
        assert np.array_equal(labels[d], labels["sim"]), d
    assert set(np.unique(labels["sim"])) <= set(range(len(syn.CLASSES)))


def _stats(domain, n=40, size=48):
    """(per-class mean colour K×3, global pixel std, class frequencies)."""
    k = len(syn.CLASSES)
    sums, counts, imgs = np.zeros((k, 3)), np.zeros(k), []
    for i in range(n):
        img, lab = syn.render(domain, (7, 2, i), size)
        pix, lab = img.reshape(-1, 3) / 255.0, lab.ravel()
        imgs.append(pix)
        counts += np.bincount(lab, minlength=k)
        for c in range(3):
            sums[:, c] += np.bincount(lab, weights=pix[:, c], minlength=k)
    return sums / counts[:, None], np.concatenate(imgs).std(0), counts / counts.sum()


def test_domains_differ_measurably_in_colour_while_labels_match_in_distribution():
    stats = {d: _stats(d) for d in ("sim", *syn.TARGET_DOMAINS)}
    mean = {d: s[0] for d, s in stats.items()}
    # every target renders the classes in clearly different colours than the source ...
    for d in syn.TARGET_DOMAINS:
        assert np.linalg.norm(mean[d] - mean["sim"], axis=1).mean() > 0.15, d
    # ... and the targets differ from each other the way their names say
    assert mean["night"].mean() < 0.5 * mean["city"].mean()          # night is dark
    assert stats["fog"][1].mean() < 0.8 * stats["city"][1].mean()     # fog lowers contrast
    assert mean["snow"][:2].mean() > mean["city"][:2].mean() + 0.15   # snow covers road and sidewalk
    assert np.linalg.norm(mean["rain"] - mean["city"], axis=1).mean() > 0.1
    # the class distribution comes from the shared geometry: identical for all domains here
    for d in syn.TARGET_DOMAINS:
        assert np.allclose(stats[d][2], stats["sim"][2])
    # and close between disjoint scene sets (the benchmark's splits use different keys)
    other = np.zeros(len(syn.CLASSES))
    for i in range(40):
        other += np.bincount(syn.render("sim", (7, 3, i), 48)[1].ravel(), minlength=len(syn.CLASSES))
    assert np.abs(other / other.sum() - stats["sim"][2]).max() < 0.06
    assert (stats["sim"][2] > 0.002).all(), "every class appears"


def test_unknown_domain_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown synthetic domain 'moon'; valid: sim, city"):
        syn.render("moon", (0,), 32)


def test_prepared_split_memo_returns_the_decoded_items_and_keeps_to_its_budget(tmp_path):
    from gkd.data.prepared import SegmentationSplit, write_split
    write_split(tmp_path / "sim" / "train", ((f"{i}", *syn.render("sim", (0, 1, i), 28)) for i in range(6)))
    plain = SegmentationSplit(tmp_path, "sim", "train", memo_bytes=0)
    memo = SegmentationSplit(tmp_path, "sim", "train", memo_bytes=3 * (3 * 28 * 28 + 28 * 28))  # three pairs
    for _ in range(2):  # the second pass reads memoised items
        for i in range(6):
            (a, la, ia), (b, lb, ib) = plain[i], memo[i]
            assert ia == ib == i and torch.equal(a, b) and torch.equal(la, lb) and lb.dtype == torch.long
    assert len(memo._memo) == 3 and not plain._memo
    memo[0][0].zero_()  # a caller writing into an item it got must not change the memo
    assert torch.equal(memo[0][0], plain[0][0])
