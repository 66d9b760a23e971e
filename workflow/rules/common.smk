# Config validation, selectors, method groups and helpers shared by all rules.
import json
import re

import yaml

from gkd import config as gkd_config
from gkd import dag as gkd_dag

# Stage scripts read params.yaml themselves (DVC does the same), so only the selectors may differ
# between Snakemake's config and the file; anything else would silently be ignored by the stages.
_on_disk = yaml.safe_load(open("params.yaml"))
_changed = sorted(k for k in set(config) | set(_on_disk)
                  if k not in gkd_config.SELECTORS and config.get(k) != _on_disk.get(k))
if _changed:
    raise WorkflowError(
        f"--config may override only the selectors {', '.join(gkd_config.SELECTORS)}; "
        f"edit params.yaml for: {', '.join(_changed)}")
try:
    CFG = gkd_config.from_dict(dict(config), check_registries=False)
    # Method groups and per-stage params come from the method registry (which imports torch);
    # they are cached per params + code, so a no-op run parses without torch.
    PLAN = gkd_dag.cached_plan(CFG, ".snakemake/gkd/plan.json", ablation=True)
except gkd_config.ConfigError as err:
    raise WorkflowError(f"params.yaml: {err}")

B, T, S = CFG.benchmark_name, CFG.teacher_name, CFG.student_name
THREADS = CFG.threads or workflow.cores  # torch threads per job (params.yaml: threads)
SETTINGS = gkd_dag.settings(CFG, ablation=True)  # ablation rules exist; only its target builds them
LAUNCH = gkd_dag.LAUNCH
SEL = f"--params params.yaml --benchmark {B}"
DATA = f"data/prepared/{B}"
TEACHER = f"models/teachers/{T}"
STUDENT = f"models/students/{S}"
FEATURES = f"features/{B}/{T}"
TEACHER_TASK = "models/teacher_task"
LIB_DATA, LIB_TRAIN, LIB_METHODS = gkd_dag.LIB_DATA, gkd_dag.LIB_TRAIN, gkd_dag.LIB_METHODS


def res(family):
    """Job resources of a stage family (params.yaml: resources) for cluster profiles."""
    r = CFG.resources.get(family)
    return {} if r is None else {"gpu": r.gpu, "mem_mb": r.mem_mb, "runtime": r.runtime}


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing, if there are none)."""
    return "|".join(names) if names else "(?!x)x"


_STAGE_PARAMS = PLAN["stage_params"]


def stage_knobs(stage):
    """The params keys DVC lists for `stage` (gkd.dag is their one source), selectors resolved."""
    values = {"benchmark": B, "teacher": T, "student": S, "f2f.student": CFG.f2f.student, "item": "{method}"}
    keys = _STAGE_PARAMS.get(stage, [])  # absent: a method group that is empty in this setting
    return [re.sub(r"\$\{([\w.]+)\}", lambda m: values[m.group(1)], key) for key in keys]


def knobs(*keys):
    """The params.yaml values a rule depends on (dotted keys, `{method}` filled from wildcards),
    as a JSON string: Snakemake reruns the rule when it changes, as DVC does for `params:`."""
    def get(wildcards):
        out = {}
        for key in keys:
            node = dict(config)
            for part in key.format(**dict(wildcards.items())).split("."):
                node = node[part]
            out[key] = node
        return json.dumps(out, sort_keys=True)
    return get
