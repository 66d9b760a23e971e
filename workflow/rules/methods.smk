# One job per method: stage 1 (distill) and stage 2 (adapt) for methods with a label-free stage;
# one-stage task training for the others (`train` without a teacher, `train_kd` with cached teacher
# outputs). Which method goes where is the method's own declaration (gkd.distill).
PAIR = f"{SEL} --teacher {T} --student {S}"
METHOD_KNOBS = ("seed", f"benchmarks.{B}", "adapt", "method_configs.{method}")


rule distill:
    wildcard_constraints:
        method=one_of(GROUPS["stage1"]),
    input:
        code=["src/gkd/stages/distill.py", *LIB_METHODS],
        data=DATA,
        student=STUDENT,
        features=FEATURES,
    output:
        model=directory("models/{method}/stage1"),
        live=directory("logs/{method}/stage1"),
    params:
        knobs=knobs("seed", f"benchmarks.{B}", "distill", "method_configs.{method}"),
    log:
        "logs/snakemake/distill_{method}.log",
    benchmark:
        "benchmarks/runs/distill_{method}.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.distill {PAIR} --method {wildcards.method} --data {input.data} "
        "--student-weights {input.student} --features {input.features} --out {output.model} "
        "--live {output.live} > {log} 2>&1"


rule adapt:
    wildcard_constraints:
        method=one_of(GROUPS["stage1"]),
    input:
        code=["src/gkd/stages/adapt.py", *LIB_METHODS],
        data=DATA,
        init="models/{method}/stage1",
    output:
        model=directory("models/{method}/stage2"),
        live=directory("logs/{method}/stage2"),
    params:
        knobs=knobs(*METHOD_KNOBS),
    log:
        "logs/snakemake/adapt_{method}.log",
    benchmark:
        "benchmarks/runs/adapt_{method}.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.adapt {PAIR} --method {wildcards.method} --data {input.data} --init {input.init} "
        "--out {output.model} --live {output.live} > {log} 2>&1"


rule train:
    wildcard_constraints:
        method=one_of(GROUPS["plain"]),
    input:
        code=["src/gkd/stages/adapt.py", *LIB_METHODS],
        data=DATA,
        init=STUDENT,
    output:
        model=directory("models/{method}/stage2"),
        live=directory("logs/{method}/stage2"),
    params:
        knobs=knobs(*METHOD_KNOBS),
    log:
        "logs/snakemake/train_{method}.log",
    benchmark:
        "benchmarks/runs/train_{method}.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.adapt {PAIR} --method {wildcards.method} --data {input.data} --init {input.init} "
        "--out {output.model} --live {output.live} > {log} 2>&1"


rule train_kd:
    wildcard_constraints:
        method=one_of(GROUPS["kd"]),
    input:
        code=["src/gkd/stages/adapt.py", *LIB_METHODS],
        data=DATA,
        init=STUDENT,
        teacher_task=TEACHER_TASK,
        features=FEATURES,
    output:
        model=directory("models/{method}/stage2"),
        live=directory("logs/{method}/stage2"),
    params:
        knobs=knobs(*METHOD_KNOBS),
    log:
        "logs/snakemake/train_kd_{method}.log",
    benchmark:
        "benchmarks/runs/train_kd_{method}.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.adapt {PAIR} --method {wildcards.method} --data {input.data} --init {input.init} "
        "--teacher-task {input.teacher_task} --features {input.features} --out {output.model} "
        "--live {output.live} > {log} 2>&1"
