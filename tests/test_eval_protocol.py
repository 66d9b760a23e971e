"""Evaluation under the paper's test protocol: the image at its dataset's test scale, the label never
resized, sliding windows of the model's input size with stride round(2/3 of it), the logits resized to
the label before argmax — and a split that mixes image sizes (issue 14, item 8)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gkd import io, train
from gkd.config import ModelConfig
from gkd.data import real
from gkd.data.prepared import IGNORE, SegmentationSplit, to_float, write_split
from gkd.models.artifacts import new_segmenter, save_segmenter
from gkd.models.backbone import create_backbone
from gkd.models.decoders import slide_stride, window_starts
from gkd.stages import evaluate

CROP, K = 32, 4  # the tiny model's input size (4×4 tokens of 8 px) and class count


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    seg = new_segmenter(create_backbone(ModelConfig("vit_tiny_patch16_224", 8, embed_dim=32, depth=2, num_heads=2),
                                        CROP, seed=0), "linear", 0, K)
    with torch.no_grad():  # a spread-out classifier, so that every class is predicted somewhere
        seg.decoder.classify.weight.mul_(20)
    return seg.eval()


# --- windows ------------------------------------------------------------------------------------------------------
def mmseg_starts(length: int, crop: int, stride: int) -> list[int]:
    """mmseg ``slide_inference``'s window offsets, in its own formulation (grid count, then clamping)."""
    grids = max(length - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, length) - crop, 0) for i in range(grids)]


def test_windows_cover_the_image_with_the_paper_stride():
    assert slide_stride(512) == 341 and slide_stride(1024) == 683
    for length in (512, 513, 853, 854, 1024, 1195, 1706, 2048):
        starts = window_starts(length, 512, 341)
        assert starts == mmseg_starts(length, 512, 341), length
        assert starts[0] == 0 and starts[-1] == length - 512
        gaps = np.diff(starts)
        assert (gaps[:-1] == 341).all() and all(0 < g <= 341 for g in gaps), (length, starts)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + 512] = True
        assert covered.all()
    assert window_starts(1024, 512, 341) == [0, 341, 512]
    with pytest.raises(ValueError, match="length 500, window 512"):
        window_starts(500, 512, 341)


@torch.no_grad()
def test_overlapping_windows_are_averaged(model):
    stride = slide_stride(CROP)  # 21: windows at 0 and 21 across a 53-px width
    x = torch.rand(1, 3, CROP, CROP + stride)
    out = model.predict(x)
    assert out.shape == (1, K, CROP, CROP + stride)
    left, right = model.predict(x[..., :CROP]), model.predict(x[..., stride:])
    torch.testing.assert_close(out[..., :stride], left[..., :stride])
    torch.testing.assert_close(out[..., CROP:], right[..., CROP - stride:])
    torch.testing.assert_close(out[..., stride:CROP], (left[..., stride:] + right[..., :CROP - stride]) / 2)
    # a label-sized output is the image-resolution logits resized, bilinear
    torch.testing.assert_close(model.predict(x, size=(48, 80)),
                               F.interpolate(out, size=(48, 80), mode="bilinear", align_corners=False))


# --- test scales ----------------------------------------------------------------------------------------------------
def test_each_target_is_resized_to_its_dataset_test_scale():
    size, s = real.eval_image_size, real.EVAL_SCALES
    assert size(1024, 2048, s["cityscapes"], 512) == (512, 1024)        # Resize (1024, 512)
    assert size(720, 1280, s["bdd100k"], 512) == (720, 1280)            # (1280, 720): unchanged
    assert size(1080, 1920, s["acdc_fog"], 512) == (540, 960)           # (960, 540)
    assert size(1512, 2016, s["mapillary"], 512) == (512, 683)          # the half-size copy into (1024, 512)
    assert size(800, 2000, s["mapillary"], 512) == (512, 1280)          # a panorama keeps one whole window
    assert size(512, 512, s["vaihingen_irrg"], 512) == (512, 512)
    assert size(1024, 2048, s["cityscapes"], 256) == (256, 512)         # the box follows a smaller crop
    assert size(1024, 2048, None, 512) == (512, 1024)                   # no entry: short side = crop
    assert set(s) >= {"cityscapes", "bdd100k", "mapillary", "acdc_night", "acdc_snow", "acdc_fog", "acdc_rain",
                      "potsdam_rgb", "potsdam_irrg", "vaihingen_irrg"}


def test_eval_pair_resizes_the_image_and_keeps_the_label():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)
    label = rng.integers(0, K, (48, 96), dtype=np.uint8)
    im, lab = real.eval_pair(image, label, real.EVAL_SCALES["cityscapes"], 16)
    assert im.shape == (16, 32, 3) and lab is label
    im, lab = real.eval_pair(image, label, real.EVAL_SCALES["mapillary"], 16)  # GKD's half-size ground truth
    assert im.shape == (16, 32, 3)
    np.testing.assert_array_equal(lab, label[1::2, 1::2])


# --- evaluation ----------------------------------------------------------------------------------------------------
def make_benchmark(root, pairs):
    """A prepared benchmark whose one target `mix` holds ``pairs`` (image H×W×3, label h×w) in order."""
    write_split(root / "mix" / "test", [(f"img{i}", im, lab) for i, (im, lab) in enumerate(pairs)])
    io.write_json(root / "meta.json", dict(name="mixed", classes=[f"c{k}" for k in range(K)],
                                           palette=[[k, k, k] for k in range(K)], source="src", targets=["mix"],
                                           image_size=CROP, splits={"mix": {"test": len(pairs)}}))
    return root


def random_pair(rng, image_hw, label_hw):
    image = rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    label = rng.integers(0, K, label_hw, dtype=np.uint8)
    label[rng.random(label_hw) < 0.1] = IGNORE
    return image, label


@torch.no_grad()
def brute_force(model, pairs) -> tuple[float, np.ndarray]:
    """mIoU (%) and per-image counts (tp, gt, pred per class), one image at a time, at label resolution."""
    tp, gt, pr = np.zeros(K), np.zeros(K), np.zeros(K)
    rows = []
    for image, label in pairs:
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        logits = F.interpolate(model.predict(x), size=label.shape, mode="bilinear", align_corners=False)
        pred = logits[0].argmax(0).numpy()
        valid = label != IGNORE
        row = np.array([[((pred == c) & (label == c) & valid).sum() for c in range(K)],
                        [((label == c) & valid).sum() for c in range(K)],
                        [((pred == c) & valid).sum() for c in range(K)]])
        rows.append(row)
        tp, gt, pr = tp + row[0], gt + row[1], pr + row[2]
    union = gt + pr - tp
    return float(np.mean([100 * t / u for t, u in zip(tp, union) if u > 0])), np.stack(rows)


@pytest.mark.slow  # runs the evaluate stage
def test_a_split_of_mixed_sizes_is_scored_at_label_resolution(tmp_path, model, tiny_cfg):
    rng = np.random.default_rng(1)
    pairs = [random_pair(rng, (CROP, CROP), (48, 48)),    # first image square, the model's input size
             random_pair(rng, (CROP, 48), (20, 30)),      # wider, its label coarser than the image
             random_pair(rng, (CROP, 48), (64, 96)),      # same image size: batched with the previous one
             random_pair(rng, (56, CROP), (112, 64)),     # portrait, label finer
             random_pair(rng, (CROP, CROP), (CROP, CROP))]
    data = make_benchmark(tmp_path / "data", pairs)
    save_segmenter(tmp_path / "model", model, CROP, "linear", 0, [f"c{k}" for k in range(K)], {"method": "x"})
    result = evaluate.run(tiny_cfg, tmp_path / "model", data, tmp_path / "m.json", "x", tmp_path / "per_image.npz")
    expected, rows = brute_force(model, pairs)
    assert 0 < expected < 100
    assert result["domains"]["mix"] == round(expected, 4) == result["avg"]
    assert json.loads((tmp_path / "m.json").read_text())["domains"]["mix"] == round(expected, 4)
    per_image = np.load(tmp_path / "per_image.npz")["mix"]
    np.testing.assert_array_equal(per_image, rows)
    # every non-ignored pixel of every original label was scored, and nothing else
    assert [int(r[1].sum()) for r in per_image] == [int((lab != IGNORE).sum()) for _, lab in pairs]
    # the batch size only groups images: one at a time gives the same matrix
    acc = train.make_accelerator(tiny_cfg.runtime)
    split = SegmentationSplit(data, "mix", "test", memo_bytes=0)
    for batch_size in (1, 2, 16):
        conf, counts = evaluate.evaluate_split(model, split, K, batch_size, acc)
        np.testing.assert_array_equal(counts, rows)


@torch.no_grad()
def test_input_size_images_keep_the_whole_batch_fast_path(tmp_path, model, tiny_cfg):
    """`synthetic`: every image and label is the input size — one forward per batch, no windows, no resize."""
    rng = np.random.default_rng(2)
    pairs = [random_pair(rng, (CROP, CROP), (CROP, CROP)) for _ in range(5)]
    split = SegmentationSplit(make_benchmark(tmp_path, pairs), "mix", "test", memo_bytes=0)
    seen = []
    hook = model.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    try:
        conf, counts = evaluate.evaluate_split(model, split, K, 2, train.make_accelerator(tiny_cfg.runtime))
    finally:
        hook.remove()
    assert seen == [(2, 3, CROP, CROP), (2, 3, CROP, CROP), (1, 3, CROP, CROP)]
    # the same numbers as the pre-protocol evaluator: a batch's logits arg-maxed as they come
    images = torch.stack([split[i][0] for i in range(len(split))])
    pred = model.predict(to_float(images)).argmax(1).numpy()
    for row, p, (_, label) in zip(counts, pred, pairs):
        valid = label != IGNORE
        assert row[0].tolist() == [int(((p == c) & (label == c) & valid).sum()) for c in range(K)]
        assert row[2].tolist() == [int(((p == c) & valid).sum()) for c in range(K)]
    np.testing.assert_array_equal(conf.diagonal(), counts[:, 0].sum(0))
