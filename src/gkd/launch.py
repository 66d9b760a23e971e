"""``python -m gkd.launch --config_file workflow/accelerate.yaml -m gkd.stages.<stage> ...``: how every stage
starts — ``accelerate launch``, without its second interpreter when one process is all the config asks for.

Accelerate's simple launcher (one process, no distribution) starts the script in a child interpreter,
after importing Accelerate — and with it torch — in the parent: two torch imports per stage, about 3 s
of the 7–10 s a stage that does no work took on 2 CPU cores. For such a config (``distributed_type: NO``,
one process, one machine) this module runs the stage module in its own interpreter instead, with the
environment the simple launcher would set. Any other config — several GPUs or nodes, DeepSpeed, FSDP,
or explicit launcher flags such as ``--multi_gpu`` — goes to ``accelerate launch`` unchanged, so the
same command scales out when ``workflow/accelerate.yaml`` says so (README, "Scaling out").
"""
from __future__ import annotations

import os
import runpy
import sys

import yaml

SINGLE = {"distributed_type": "NO", "num_processes": 1, "num_machines": 1}


def split(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """(launcher options, module after ``-m``, the module's own arguments)."""
    if "-m" not in argv:
        return argv, None, []
    i = argv.index("-m")
    return argv[:i], argv[i + 1], argv[i + 2:]


def single_process(options: list[str]) -> dict | None:
    """The config of a one-process launch that needs no launcher, or None."""
    if [o for o in options if o not in ("--quiet",)][:1] != ["--config_file"] or len(options) > 3:
        return None  # flags beyond the config file (e.g. --multi_gpu): Accelerate decides
    path = options[options.index("--config_file") + 1]
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    return config if all(str(config.get(k, v)) == str(v) for k, v in SINGLE.items()) else None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    options, module, rest = split(argv)
    config = single_process(options) if module else None
    if config is None:
        os.execvp(sys.executable, [sys.executable, "-m", "accelerate.commands.launch", *argv])
    # what accelerate's simple launcher puts into the child's environment
    os.environ.setdefault("ACCELERATE_USE_CPU", str(bool(config.get("use_cpu", False))))
    os.environ.setdefault("ACCELERATE_MIXED_PRECISION", str(config.get("mixed_precision", "no")))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
