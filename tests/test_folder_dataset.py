"""Folder datasets (gkd.data.folder; docs/custom-dataset.md): your own images/ + labels/ pairs and a label map
in params, no reader to write — parsed and checked, read, preflighted by `gkd check-data`, and (slow) the
main pipeline run on them through Snakemake."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import fixtures_datasets as fx
from conftest import copy_repo, run, tiny_params
from gkd import config
from gkd.cli import main as gkd
from gkd.config import ConfigError
from gkd.data import real
from gkd.data.readers import DataError

ROADS = {"root": "", "domains": list(fx.FOLDER_DOMAINS), "classes": fx.FOLDER_CLASSES,
         "label_map": fx.FOLDER_LABEL_MAP}


def folder_params(raw: Path, **preset) -> dict:
    """tiny params with the fixture as folder dataset `roads` and a benchmark `day2night` on it; a teacher and
    a student with no weights trained on a generic stream (a folder benchmark has none to train them on)."""
    params = tiny_params()
    params["datasets"] = {"roads": {**ROADS, "root": str(raw)}}
    params["benchmarks"]["day2night"] = {"adapter": "real", "image_size": 32, "patch_size": 8, "source": "day",
                                         "targets": ["night"], **preset}
    params["teachers"]["tiny_random"] = {"timm_name": "vit_small_patch16_224", "patch_size": 8, "embed_dim": 64,
                                         "depth": 2, "num_heads": 2, "weights": "none"}
    params.update(benchmark="day2night", teacher="tiny_random", student="vit_t6_random", methods=["gkd"])
    params["f2f"]["methods"] = []
    params["ablation"] = {"methods": [], "random_student": ""}  # its random student is the student here
    return params


def test_datasets_section_takes_folders_and_folder_datasets():
    parsed = config.build_datasets({"gta5": "/data/GTA5", "roads": {**ROADS, "root": "/data/roads"}})
    assert parsed["gta5"] == "/data/GTA5"
    roads = parsed["roads"]
    assert isinstance(roads, config.FolderDatasetConfig) and roads.domains == ["day", "night"]
    assert roads.mapping() == {0: 255, 10: 0, 20: 1, 30: 2, 255: 255}
    identity = config.build_datasets({"x": {"root": "/r", "domains": ["a"], "classes": ["p", "q"]}})["x"]
    assert identity.mapping() == {0: 0, 1: 1, 255: 255}
    quoted = config.build_datasets({"x": {"root": "/r", "domains": ["a"], "classes": ["p"], "label_map": {"7": 0}}})
    assert quoted["x"].mapping() == {7: 0, 255: 255}


@pytest.mark.parametrize("change, message", [
    ({"label_map": {10: 3}}, r"datasets\.roads\.label_map: 10: 3 is not raw value .* class index \(0\.\.2, or 255"),
    ({"label_map": {300: 0}}, r"datasets\.roads\.label_map: 300"),
    ({"domains": ["day", "day"]}, r"datasets\.roads\.domains: expected a non-empty list of distinct names"),
    ({"domains": ["day/1"]}, r"datasets\.roads\.domains: \['day/1'\] cannot be names"),
    ({"classes": []}, r"datasets\.roads\.classes"),
    ({"palette": [[0, 0, 0]]}, r"datasets\.roads\.palette: expected one \[R, G, B\] .* per class, 3 in all"),
    ({"label_maps": {}}, r"datasets\.roads: unknown key\(s\) label_maps; valid keys: classes, domains, label_map"),
])
def test_a_bad_folder_dataset_is_one_error_naming_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        config.build_datasets({"roads": {**ROADS, "root": "/data/roads", **change}})


def test_domains_need_names_of_their_own():
    with pytest.raises(ConfigError, match=r"datasets\.more\.domains: 'night' is also a dataset of datasets\.roads"):
        config.build_datasets({"roads": {**ROADS, "root": "/a"}, "more": {**ROADS, "root": "/b", "domains": ["night"]}})
    with pytest.raises(ConfigError, match="cityscapes is the name of a built-in dataset"):
        real.check_datasets(config.build_datasets({"roads": {**ROADS, "root": "/a", "domains": ["cityscapes"]}}))
    with pytest.raises(ConfigError, match=r"datasets\.gta5: the entry of built-in dataset 'gta5' is its folder"):
        real.check_datasets(config.build_datasets({"gta5": {**ROADS, "root": "/a"}}))
    with pytest.raises(ConfigError, match=r"unknown dataset reader 'dusk'; valid choices: .*day.*night"):
        real.find_reader("dusk", config.build_datasets({"roads": {**ROADS, "root": "/a"}}))


def test_reader_pairs_and_maps_every_sample(tmp_path):
    raw, expected = fx.build_folder_dataset(tmp_path / "roads")
    datasets = config.build_datasets({"roads": {**ROADS, "root": str(raw)}})
    for domain, splits in expected.items():
        reader = real.find_reader(domain, datasets)
        assert reader.classes == fx.FOLDER_CLASSES and len(reader.palette) == 3
        for split, labels in splits.items():
            samples = reader.samples(real.dataset_dir(reader, None, datasets), split)
            assert sorted(s.image.relative_to(raw / domain).as_posix() for s in samples) == sorted(labels)
            assert any(s.image.suffix == ".jpg" for s in samples)
            for s in samples:
                image, label = real.load(reader, s)
                assert image.shape == (32, 40, 3)
                np.testing.assert_array_equal(label, labels[s.image.relative_to(raw / domain).as_posix()])


def test_a_label_value_outside_the_map_names_the_file_and_the_map(tmp_path):
    raw, _ = fx.build_folder_dataset(tmp_path / "roads", counts={"val": 1})
    bad = raw / "night/labels/val/night_000.png"
    fx.save_l(bad, np.full((32, 40), 7, np.uint8))
    reader = real.find_reader("night", config.build_datasets({"roads": {**ROADS, "root": str(raw)}}))
    with pytest.raises(DataError, match=r"night_000\.png: label values \[7\] outside .*datasets\.roads\.label_map "
                                        r"\(0->255, 10->0, 20->1, 30->2; 255 ignored\)"):
        reader.read_label(bad)


def test_real_adapter_reads_a_folder_benchmark(tmp_path):
    raw, _ = fx.build_folder_dataset(tmp_path / "roads")
    cfg = config.from_dict(folder_params(raw, train_crops=2))
    info, records = real.real_adapter(cfg.benchmark, cfg.seed, cfg.datasets)
    assert info["classes"] == fx.FOLDER_CLASSES and info["source"] == "day"
    counts = {(domain, split): n for domain, split, n, recs in records for _ in recs}
    assert counts == {("day", "train"): 12, ("day", "val"): 4, ("night", "test"): 4}  # 6 images x 2 crops


def test_check_data_on_a_folder_benchmark(tmp_path, capsys):
    raw, _ = fx.build_folder_dataset(tmp_path / "roads")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(folder_params(raw), sort_keys=False))
    assert gkd(["check-data", "--params", str(params)]) == 0
    assert "check-data day2night: no problems in 14 samples" in capsys.readouterr().out
    (raw / "day/labels/train/day_001.png").unlink()
    fx.save_l(raw / "night/labels/val/night_002.png", np.full((32, 40), 99, np.uint8))
    assert gkd(["check-data", "--params", str(params)]) == 1
    out = capsys.readouterr().out
    assert "missing label" in out and "day_001" in out and "bad label" in out and "[99]" in out


def test_the_schema_accepts_a_folder_dataset(tmp_path):
    import jsonschema
    from gkd import schema
    jsonschema.validate(folder_params(tmp_path), schema.params_schema())
    bad = folder_params(tmp_path)
    bad["datasets"]["roads"]["clases"] = ["x"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema.params_schema())


@pytest.mark.slow
def test_snakemake_runs_the_main_pipeline_on_a_folder_dataset(tmp_path):
    raw, _ = fx.build_folder_dataset(tmp_path / "roads")
    params = folder_params(raw, train_crops=2)      # 6 day images x 2 crops: 12 training samples
    for section in ("distill", "adapt"):
        params[section]["batch_size"] = 8           # a step needs a full batch
    repo = copy_repo(tmp_path / "repo", params)
    run(["snakemake", "--cores", "2", "results/f2l_table.csv"], cwd=repo, timeout=1500)
    df = pd.read_csv(repo / "results/f2l_table.csv")
    assert df.equals(pd.read_csv(repo / "results/day2night/tiny_random/vit_t6_random/f2l_table.csv"))
    assert df["Method"].tolist() == ["Teacher", "+GKD"]
    assert df.columns.tolist() == ["Method", "Params (M)", "night", "Avg", "Avg ± images (95 %)", "Avg sd over seeds",
                                   "runs", "Avg sd over student inits", "draws", "day (source val)"]
    assert df[["night", "Avg", "day (source val)"]].apply(lambda c: c.between(0, 100)).all().all()
    meta = json.loads((repo / "data/prepared/day2night/meta.json").read_text())
    assert meta["classes"] == fx.FOLDER_CLASSES and meta["splits"]["day"] == {"train": 12, "val": 4}
    assert meta["splits"]["night"] == {"test": 4}
    manifest = json.loads((repo / "data/manifests/day2night.json").read_text())
    assert "day" in json.dumps(manifest) and "night" in json.dumps(manifest)  # the raw files are tracked
    shown = run(["gkd", "show", "f2l_table"], cwd=repo).stdout
    assert shown.splitlines()[0] == "results/f2l_table.csv" and "+GKD" in shown
