"""Raw data is a dependency (issue 14, item 5): the `manifest` stage lists the raw files a real benchmark's
`prepare` reads (size + mtime, or SHA-256 on demand) and rewrites its file only when that list changes,
so a changed, added or removed raw file reruns `prepare` in both front-ends and a no-op reruns nothing.
Fixture trees in the official layouts (tests/fixtures_datasets.py)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import copy_repo, run, tiny_params
from fixtures_datasets import build_gta2city_fixture, save_palette
from test_dag import dvc_stages, snakemake_jobs

PLACES = {"gta5": "GTA5", "cityscapes": "cityscapes", "bdd100k": "bdd100k", "mapillary": "mapillary"}


def real_params(raw: Path, **bench) -> dict:
    """Tiny params selecting gta2city on the fixture tree at ``raw`` (per-dataset folders, as the README says)."""
    params = tiny_params()
    params["benchmark"] = "gta2city"
    params["teacher"] = "dinov2_s14"          # real benchmarks have no generic stream to pretrain tiny_vfm on
    params["student"] = "vit_t6_random"
    params["f2f"]["methods"] = []
    params["methods"] = ["gkd"]
    params["ablation"] = {"methods": [], "random_student": ""}  # its random-init student is `student` here
    params["datasets"] = {name: str(raw / folder) for name, folder in PLACES.items()}
    params["benchmarks"]["gta2city"].update({"image_size": 64, "train_images": 0, "target_images": 0, **bench})
    return params


def config(raw: Path, **bench):
    from gkd.config import from_dict
    return from_dict(real_params(raw, **bench))


def edit_label(path: Path) -> None:
    """Change a few pixels of a GTA5 label to another id of the same file (still a valid label), and move
    its mtime on by a second, as a real edit would (a test may write twice within the clock's resolution)."""
    ids = np.array(Image.open(path))
    before = path.stat().st_mtime_ns
    ids[:4, :4] = ids[-1, -1] if ids[0, 0] != ids[-1, -1] else (ids[0, 0] + 1) % 34
    save_palette(path, ids)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def entries(path: Path) -> dict[tuple[str, str], list]:
    manifest = json.loads(path.read_text())
    return {(dataset, e[0]): e[1:] for dataset, listed in manifest["files"].items() for e in listed}


@pytest.fixture
def raw(tmp_path):
    return build_gta2city_fixture(tmp_path / "raw")


# ---------------------------------------------------------------------------------------------- the stage
def test_manifest_lists_exactly_what_prepare_reads_and_is_stable_on_a_noop(raw, tmp_path):
    from gkd.stages import manifest
    cfg = config(raw, train_images=3)
    out = tmp_path / "m" / "gta2city.json"
    assert manifest.refresh(cfg, out)
    listed = entries(out)
    # the first 3 GTA5 training pairs (the cap), every target's evaluation split; never the targets' train
    # or test files, which prepare does not read
    assert {rel for d, rel in listed if d == "gta5"} == {f"{kind}/0000{i}.png" for kind in ("images", "labels")
                                                         for i in (1, 2, 3)}
    assert {d for d, _ in listed} == {"gta5", "cityscapes", "bdd100k", "mapillary"}
    assert all("/val/" in rel or "validation/" in rel for d, rel in listed if d != "gta5"), listed
    assert len([1 for d, _ in listed if d == "cityscapes"]) == 8  # 4 val images + their labelIds
    for (dataset, rel), (size, mtime) in listed.items():
        st = (raw / PLACES[dataset] / rel).stat()
        assert (size, mtime) == (st.st_size, st.st_mtime_ns)

    text, stat = out.read_bytes(), out.stat()
    assert not manifest.refresh(cfg, out)  # no-op: the file is not touched
    assert out.read_bytes() == text and out.stat().st_mtime_ns == stat.st_mtime_ns and out.stat().st_ino == stat.st_ino
    assert manifest.render(manifest.build(cfg)) == text.decode()  # deterministic
    # a file the benchmark does not read changes nothing (a target's train split, a GTA5 pair past the cap)
    edit_label(raw / "cityscapes/gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png")
    edit_label(raw / "GTA5/labels/00008.png")
    assert not manifest.refresh(cfg, out)


def test_an_edited_added_or_removed_raw_file_changes_the_manifest(raw, tmp_path):
    from gkd.stages import manifest
    cfg = config(raw)
    out = tmp_path / "gta2city.json"
    manifest.refresh(cfg, out)
    before = entries(out)

    edit_label(raw / "GTA5/labels/00002.png")
    assert manifest.refresh(cfg, out)
    after = entries(out)
    assert {k for k in before if before[k] != after.get(k)} == {("gta5", "labels/00002.png")}
    assert not manifest.refresh(cfg, out)

    shutil.copy(raw / "GTA5/images/00001.png", raw / "GTA5/images/00009.png")  # added: a new pair
    shutil.copy(raw / "GTA5/labels/00001.png", raw / "GTA5/labels/00009.png")
    assert manifest.refresh(cfg, out)
    assert set(entries(out)) - set(after) == {("gta5", "images/00009.png"), ("gta5", "labels/00009.png")}

    removed = next((raw / "bdd100k/labels/sem_seg/masks/val").iterdir())  # removed: an image loses its label
    removed.unlink()
    assert manifest.refresh(cfg, out)
    listed = entries(out)
    assert ("bdd100k", f"labels/sem_seg/masks/val/{removed.name}") not in listed
    assert ("bdd100k", f"images/10k/val/{removed.stem}.jpg") in listed  # still listed: prepare meets it
    problems = json.loads(out.read_text())["problems"]
    assert len(problems) == 1 and problems[0].startswith("bdd100k/val: ") and "no label; expected" in problems[0]
    assert not manifest.refresh(cfg, out)

    shutil.rmtree(raw / "mapillary")  # a dataset gone is recorded (prepare will say what is wrong)
    assert manifest.refresh(cfg, out)
    recorded = json.loads(out.read_text())
    assert "mapillary" not in recorded["files"] and any(p.startswith("mapillary/val: ") for p in recorded["problems"])


def test_the_generic_folder_images_prepare_takes_are_listed(raw, tmp_path):
    """Stage 1a's image folder: the images the caps select (spread over the sorted folder), no others."""
    from gkd.stages import manifest
    folder = tmp_path / "imagenet" / "train"
    for i in range(6):
        (folder / f"n0{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(raw / f"GTA5/images/0000{i + 1}.png", folder / f"n0{i % 2}" / f"img{i}.JPEG")
    cfg = config(raw, generic_folder=str(folder), generic_images=2, generic_val_images=1)
    out = tmp_path / "gta2city.json"
    manifest.refresh(cfg, out)
    listed = sorted(rel for d, rel in entries(out) if d == "generic")
    assert len(listed) == 3 and all(rel.startswith("n0") and rel.endswith(".JPEG") for rel in listed)
    unused = next(p for p in sorted(folder.rglob("*.JPEG")) if p.relative_to(folder).as_posix() not in listed)
    os.utime(unused, ns=(unused.stat().st_atime_ns, unused.stat().st_mtime_ns + 10**9))
    assert not manifest.refresh(cfg, out)  # an image prepare does not take
    chosen = folder / listed[0]
    os.utime(chosen, ns=(chosen.stat().st_atime_ns, chosen.stat().st_mtime_ns + 10**9))
    assert manifest.refresh(cfg, out)
    shutil.rmtree(folder)
    assert manifest.refresh(cfg, out) and json.loads(out.read_text())["problems"][0].startswith("generic: ")


def test_content_hashes_on_demand_see_edits_that_keep_size_and_mtime(raw, tmp_path):
    """`manifest: {hash: true}`: files are known by SHA-256, so an edit whose mtime was put back (a copy
    tool preserving times, a filesystem with coarse or lying mtimes) is seen, and a mere touch is not."""
    from gkd.config import from_dict
    from gkd.stages import manifest
    params = real_params(raw)
    label = raw / "GTA5/labels/00003.png"

    def same_size_edit_keeping_mtime():
        st, data = label.stat(), bytearray(label.read_bytes())
        data[-1] ^= 0xFF  # the last byte of the IEND chunk's CRC: same size, other bytes
        label.write_bytes(bytes(data))
        os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns))

    mtimes = tmp_path / "mtime.json"
    manifest.refresh(from_dict(params), mtimes)
    same_size_edit_keeping_mtime()
    assert not manifest.refresh(from_dict(params), mtimes)  # what mtimes cannot see

    params["manifest"] = {"hash": True}
    cfg, hashes = from_dict(params), tmp_path / "sha.json"
    assert manifest.refresh(cfg, hashes)
    listed = entries(hashes)
    assert listed[("gta5", "labels/00003.png")] == [label.stat().st_size,
                                                    "sha256:" + hashlib.sha256(label.read_bytes()).hexdigest()]
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))  # touched only
    assert not manifest.refresh(cfg, hashes)
    same_size_edit_keeping_mtime()
    assert manifest.refresh(cfg, hashes)
    assert json.loads(hashes.read_text())["content"] == "size+sha256"


def test_bad_switch_is_one_clear_error(raw):
    from gkd.config import ConfigError, from_dict
    params = real_params(raw)
    params["manifest"] = {"hash": "yes"}
    with pytest.raises(ConfigError, match=r"manifest\.hash"):
        from_dict(params)
    params["manifest"] = {"hashes": True}
    with pytest.raises(ConfigError, match=r"manifest: unknown key\(s\) hashes; valid keys: hash"):
        from_dict(params)


def test_only_real_benchmarks_get_the_stage(raw):
    """`synthetic` reads no raw file: its DAG (and the committed dvc.yaml, `gkd dag --check`) is unchanged;
    a real benchmark's prepare reads the manifest, which runs every time (DVC: always_changed)."""
    from gkd import dag
    from gkd.config import from_dict
    from gkd.stages import manifest
    synthetic = from_dict(tiny_params())
    assert [s.name for s in dag.shared_stages(synthetic)][:2] == ["prepare", "teacher_weights"]
    assert "--manifest" not in dag.shared_stages(synthetic)[0].command
    assert manifest.build(synthetic)["files"] == {}

    stages = {s.name: s for s in dag.shared_stages(config(raw))}
    assert stages["manifest"].always_changed and stages["manifest"].outs == [dag.MANIFEST]
    # the readers are prepare's code on a real benchmark (its adapter), not on synthetic
    assert "src/gkd/data/mapillary.py" in stages["prepare"].code
    assert "src/gkd/data/mapillary.py" not in dag.shared_stages(synthetic)[0].code
    assert stages["manifest"].code == [] and stages["prepare"].deps == [dag.MANIFEST]
    assert f"--manifest {dag.MANIFEST}" in stages["prepare"].command
    text = dag.render_dvc(list(stages.values()), "main")
    assert "  manifest:\n" in text and "    always_changed: true\n" in text


@pytest.mark.slow  # runs prepare
def test_prepare_warns_when_a_real_benchmark_runs_untracked(raw, tmp_path, caplog):
    """`dvc exp run -S benchmark=<real>` on a dvc.yaml rendered for `synthetic` has no manifest stage:
    prepare still works but says that raw changes will not rerun it, and how to fix that."""
    from gkd.stages import prepare
    cfg = config(raw, train_images=1, val_images=1, target_images=1)
    with caplog.at_level("WARNING", logger="gkd.prepare"):
        prepare.run(cfg, tmp_path / "prepared", None)
    assert any("raw files of gta2city are not tracked" in r.message and "gkd dag" in r.message
               for r in caplog.records)


# ---------------------------------------------------------------------------------------------- front-ends
@pytest.mark.slow  # runs the manifest and prepare stages through both front-ends
def test_a_raw_edit_reruns_prepare_in_both_front_ends_and_a_noop_does_not(raw, tmp_path):
    """Both front-ends declare the same DAG with the manifest stage (tests/test_dag.py's check, for a real
    benchmark); after `prepare` alone, a no-op reruns nothing and an edited raw label reruns prepare.
    About 20 s on 2 cores."""
    smk = copy_repo(tmp_path / "smk", real_params(raw))
    jobs, stages = snakemake_jobs(smk, ["all"]), dvc_stages(smk)
    assert sorted(jobs) == sorted(stages) and {"manifest", "prepare"} <= set(stages)
    for name in stages:
        assert jobs[name] == stages[name], name
    dvc = Path(shutil.copytree(smk, tmp_path / "dvc", symlinks=True))
    manifest = "data/manifests/gta2city.json"

    run(["snakemake", "--cores", "1", "data/prepared/gta2city"], cwd=smk)
    out = run(["dvc", "repro", "prepare"], cwd=dvc).stdout
    assert "Running stage 'manifest'" in out and "Running stage 'prepare'" in out
    lock = (dvc / "dvc.lock").read_text()

    # a no-op: Snakemake has nothing to do and leaves the manifest alone; DVC lists it again, nothing else
    stat = (smk / manifest).stat()
    noop = run(["snakemake", "--dry-run", "data/prepared/gta2city"], cwd=smk)
    assert "Nothing to be done" in noop.stdout + noop.stderr
    assert (smk / manifest).stat().st_mtime_ns == stat.st_mtime_ns
    out = run(["dvc", "repro", "prepare"], cwd=dvc).stdout
    assert "Running stage 'manifest'" in out and "Stage 'prepare' didn't change, skipping" in out, out
    assert json.loads(run(["dvc", "status", "--json", "prepare"], cwd=dvc).stdout) == {}  # prepare itself

    edit_label(raw / "GTA5" / "labels" / "00005.png")
    dry = run(["snakemake", "--dry-run", "data/prepared/gta2city"], cwd=smk).stdout
    assert re.search(r"^(local)?rule prepare:$", dry, re.M), dry
    run(["dvc", "repro", "manifest"], cwd=dvc)  # what `dvc repro` / `dvc exp run` does first
    status = json.loads(run(["dvc", "status", "--json", "prepare"], cwd=dvc).stdout)
    assert {"changed deps": {manifest: "modified"}} in status["prepare"], status
    out = run(["dvc", "repro", "prepare"], cwd=dvc).stdout
    assert "Running stage 'prepare'" in out and "run-cache" not in out, out  # rebuilt, not restored
    assert (dvc / "dvc.lock").read_text() != lock
