import shutil

import pytest
import yaml

from gkd.config import ConfigError, merge
from gkd.validate import from_dict, load
from conftest import ROOT, tiny_params


def test_default_params_validate():
    cfg = load(ROOT / "params.yaml")
    assert cfg.benchmark_name == "synthetic" and cfg.methods[:2] == ["student_frozen", "student_only"]
    assert cfg.student.weights == "classify"
    assert cfg.seed in cfg.seeds and 1 in cfg.budget.multipliers


def test_job_resources_are_workflow_settings_not_params():
    """Cluster resources live in workflow/resources.yaml (typed there); a params file that still carries
    them is one error saying where they went."""
    from gkd.config import load_resources
    families = load_resources(ROOT / "workflow/resources.yaml")
    assert set(families) == {"data", "teacher", "train", "evaluate"} and families["data"].gpu == 0
    params = tiny_params()
    params["resources"] = {"data": {"gpu": 0, "mem_mb": 1, "runtime": 1}}
    with pytest.raises(ConfigError, match="workflow/resources.yaml"):
        from_dict(params)


@pytest.mark.parametrize("key,value,needle", [
    ("student", "vit_xl", "unknown student 'vit_xl'; valid choices: deit_b, deit_s, dinov2_b, dinov2_s, tiny_vfm_s, vit_s, vit_t, vit_t6, vit_t6_random"),
    ("teacher", "dino9", "unknown teacher 'dino9'; valid choices:"),
    ("benchmark", "kitti", "unknown benchmark 'kitti'; valid choices: city2acdc, gta2city, gta_synthia2city, "
                           "gta_synthia_urbansyn2city, potsdam2vaihingen, synthetic"),
    ("methods", ["gkd", "magic_kd"], "unknown method 'magic_kd'; valid choices:"),
])
def test_bad_preset_names_list_valid_choices(key, value, needle):
    raw = tiny_params()
    raw[key] = value
    with pytest.raises(ConfigError, match="valid choices") as err:
        from_dict(raw)
    assert needle in str(err.value)


def test_wrong_type_and_unknown_key_are_named():
    raw = tiny_params()
    raw["distill"]["batch_size"] = "lots"
    with pytest.raises(ConfigError, match=r"distill.batch_size: expected int, got 'lots'"):
        from_dict(raw)
    raw = tiny_params()
    raw["adapt"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"adapt: unknown key\(s\) learning_rate; valid keys:"):
        from_dict(raw)
    raw = tiny_params()
    raw["method_configs"]["gkd"]["qsdd"] = True
    with pytest.raises(ConfigError, match="method_configs.gkd: unknown key"):
        from_dict(raw)
    raw = tiny_params()
    raw["adapt"]["decoder"] = "mask2former"
    with pytest.raises(ConfigError, match="unknown decoder 'mask2former'; valid choices: linear, mlp"):
        from_dict(raw)


@pytest.mark.parametrize("key", ["head_lr", "source_lr"])
def test_a_stage1_learning_rate_must_be_positive_or_null(key):
    raw = tiny_params()
    raw["distill"][key] = 0.0
    with pytest.raises(ConfigError, match=rf"distill.{key} must be a positive learning rate or null"):
        from_dict(raw)
    raw["distill"][key] = None
    assert getattr(from_dict(raw).distill, key) is None


def test_numbers_from_command_lines_are_cast():
    raw = tiny_params()
    raw["seed"] = "3"  # snakemake --config hands values over as strings
    assert from_dict(raw).seed == 3


def test_selector_override_and_bad_override(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params()))
    assert load(path, student="vit_s").student.timm_name == "vit_small_patch16_224"
    with pytest.raises(ConfigError, match="only selectors"):
        load(path, seed="1")


def test_merge_is_deep():
    assert merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}, "d": 1}


def test_stage_cli_reports_bad_preset_before_compute(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params()))
    proc = subprocess.run([sys.executable, "-m", "gkd.stages.prepare", "--params", str(path), "--benchmark", "nope",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: unknown benchmark 'nope'; valid choices: city2acdc, gta2city, gta_synthia2city, "
        "gta_synthia_urbansyn2city, potsdam2vaihingen, synthetic")
    assert not (tmp_path / "out").exists()


def test_runtime_precision_is_validated():
    raw = tiny_params()
    raw["runtime"] = {"mixed_precision": "fp8", "compile": False}
    with pytest.raises(ConfigError, match="unknown mixed_precision 'fp8'; valid choices: bf16, fp16, no"):
        from_dict(raw)


@pytest.fixture
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state: reset it so later in-process stages run as configured."""
    import torch
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state()  # whatever in-process stage ran before
    yield
    AcceleratorState._reset_state()
    torch._dynamo.reset()


def test_bf16_autocast_path_runs_on_cpu(fresh_accelerator_state):
    """The mixed-precision path the GPU runs use, exercised on the CPU (bf16 autocast is available here)."""
    import torch
    from gkd import train
    from gkd.config import RuntimeConfig
    acc = train.make_accelerator(RuntimeConfig(mixed_precision="bf16"))
    assert acc.mixed_precision == "bf16"
    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 64)
    x = torch.randn(4, 64)
    reference = plain(x)
    out = acc.prepare(plain)(x)  # forward runs under bf16 autocast, outputs come back as fp32
    assert out.dtype == torch.float32
    diff = (out - reference).abs().max().item()
    assert 0 < diff < 0.05  # bf16 rounding: really computed in bf16, and still the same function


def test_unquoted_no_from_dvc_rewrite_means_no_mixed_precision():
    """`dvc exp run -S` rewrites params.yaml with `mixed_precision: no` unquoted; PyYAML reads false."""
    raw = tiny_params()
    raw["runtime"] = yaml.safe_load("mixed_precision: no\ncompile: false\n")
    assert raw["runtime"]["mixed_precision"] is False
    assert from_dict(raw).runtime.mixed_precision == "no"


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile's inductor backend needs a C compiler on CPU")
def test_compile_path_runs_on_cpu(fresh_accelerator_state):
    """`runtime.compile: true` wraps the prepared module with torch.compile (inductor); same function."""
    import torch
    from gkd import train
    from gkd.config import RuntimeConfig
    acc = train.make_accelerator(RuntimeConfig(compile=True))
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.GELU(), torch.nn.Linear(32, 8))
    x = torch.randn(4, 32)
    reference = plain(x)
    compiled = acc.prepare(plain)
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    torch.testing.assert_close(compiled(x), reference, rtol=1e-4, atol=1e-5)


def test_ablation_variants_are_overlays_of_gkd():
    """Editing `gkd` changes every variant: a variant states only the switch it changes."""
    import yaml
    from gkd.config import from_dict, method_keys
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["method_configs"]["gkd"]["lambda_patch"] = 0.5
    cfg = from_dict(raw)
    for variant in cfg.ablation.methods:
        options = cfg.method(variant).options
        assert options["lambda_patch"] == (0.0 if variant == "gkd_no_patch" else 0.5), variant
        assert method_keys(cfg, variant) == [f"method_configs.{variant}", "method_configs.gkd"]
    assert cfg.method("gkd_no_mask").options["mask"] is False
    raw["method_configs"]["gkd"]["base"] = "gkd_no_mask"
    with pytest.raises(ConfigError, match="chain loops: gkd -> gkd_no_mask -> gkd"):
        from_dict(raw)


def test_json_schema_is_current_and_accepts_the_params():
    """workflow/schemas/params.schema.json is what `gkd schema` writes from the types; params.yaml and
    the tiny test config satisfy it; a misspelt key does not."""
    import jsonschema
    from gkd import schema
    assert (ROOT / schema.SCHEMA_PATH).read_text() == schema.text(), "stale: run `gkd schema`"
    spec = schema.params_schema()
    jsonschema.validate(yaml.safe_load((ROOT / "params.yaml").read_text()), spec)
    jsonschema.validate(tiny_params(), spec)
    bad = tiny_params()
    bad["distill"]["lr_typo"] = 1.0
    with pytest.raises(jsonschema.ValidationError, match="lr_typo"):
        jsonschema.validate(bad, spec)


def test_presets_trained_on_the_generic_stream_need_a_benchmark_with_one():
    """Real benchmarks have no generic stream: a preset pretrained on it fails at load, naming what to set."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    with pytest.raises(ConfigError, match=r"^student 'vit_t6' has `weights: classify`.*benchmark 'gta2city' has none"):
        from_dict({**raw, "benchmark": "gta2city"})
    with pytest.raises(ConfigError, match=r"^f2f.student 'tiny_vfm_s' .*drop the F2F table \(f2f.methods: \[\]\)"):
        from_dict({**raw, "benchmark": "gta2city", "student": "deit_s"})
    with pytest.raises(ConfigError, match=r"^teacher 'tiny_vfm' .*set benchmarks.synthetic.generic_images > 0"):
        from_dict(merge(raw, {"teacher": "tiny_vfm", "benchmarks": {"synthetic": {"generic_images": 0}}}))
    with pytest.raises(ConfigError, match="student 'vit_t6'"):  # a selector swapped per command, as Snakemake does
        load(ROOT / "params.yaml", benchmark="gta2city")
    ok = from_dict({**raw, "benchmark": "gta2city", "student": "deit_s", "f2f": {**raw["f2f"], "methods": []}})
    assert ok.benchmark_name == "gta2city"
