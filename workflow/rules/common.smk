# Config validation, selectors and the helpers the rule builder (pipeline.smk) uses.
import json
import os

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
    # Which stages a method has comes from the method registry (which imports torch); it is cached
    # per params + code, so a no-op run parses without torch.
    GROUPS = gkd_dag.cached_groups(CFG, ".snakemake/gkd/groups.json")
except gkd_config.ConfigError as err:
    raise WorkflowError(f"params.yaml: {err}")

THREADS = CFG.threads or workflow.cores  # torch threads per job (params.yaml: threads)
SELECTORS = gkd_dag.selector_values(CFG)


def res(family):
    """Job resources of a stage family (params.yaml: resources) for cluster profiles."""
    r = CFG.resources.get(family)
    return {} if r is None else {"gpu": r.gpu, "mem_mb": r.mem_mb, "runtime": r.runtime}


def knobs(keys):
    """The params values a stage reads (dotted keys, selectors filled in), as one JSON string — Snakemake
    reruns the rule when it changes, as DVC does for `params:` — behind a function, so that Snakemake
    does not read its braces as wildcards."""
    out = {}
    for key in keys:
        node = dict(config)
        for part in gkd_dag.resolve(key, SELECTORS).split("."):
            node = node[part]
        out[key] = node
    text = json.dumps(out, sort_keys=True)
    return lambda wildcards: text


def as_output(path):
    """Folders (no file suffix) are directory() outputs."""
    return directory(path) if not os.path.splitext(path)[1] else path
