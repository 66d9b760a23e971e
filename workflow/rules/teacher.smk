# Backbone weights, the teacher-token cache and the teacher's own segmenter (the Teacher row).
rule teacher_weights:
    input:
        code=["src/gkd/stages/teacher_weights.py", *LIB_TRAIN],
        data=DATA,
    output:
        directory(TEACHER),
    params:
        knobs=knobs(*stage_knobs("teacher_weights")),
    resources:
        **res("teacher"),
    log:
        f"logs/snakemake/teacher_weights_{T}.log",
    benchmark:
        f"benchmarks/runs/teacher_weights_{T}.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.teacher_weights {SEL} --teacher {T} --data {input.data} --out {output} > {log} 2>&1"


rule student_weights:
    input:
        code=["src/gkd/stages/student_weights.py", "src/gkd/stages/teacher_weights.py", *LIB_TRAIN],
        data=DATA,
    output:
        directory(STUDENT),
    params:
        knobs=knobs(*stage_knobs("student_weights")),
    resources:
        **res("teacher"),
    log:
        f"logs/snakemake/student_weights_{S}.log",
    benchmark:
        f"benchmarks/runs/student_weights_{S}.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.student_weights {SEL} --student {S} --data {input.data} --out {output} > {log} 2>&1"


rule teacher_features:
    input:
        code=["src/gkd/stages/teacher_features.py", *LIB_TRAIN],
        data=DATA,
        teacher=TEACHER,
    output:
        directory(FEATURES),
    params:
        knobs=knobs(*stage_knobs("teacher_features")),
    resources:
        **res("teacher"),
    log:
        f"logs/snakemake/teacher_features_{T}.log",
    benchmark:
        f"benchmarks/runs/teacher_features_{T}.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.teacher_features {SEL} --teacher {T} --data {input.data} "
        "--teacher-weights {input.teacher} --out {output} > {log} 2>&1"


rule teacher_task:
    input:
        code=["src/gkd/stages/teacher_task.py", *LIB_METHODS],
        data=DATA,
        teacher=TEACHER,
        features=FEATURES,
    output:
        model=directory(TEACHER_TASK),
        live=directory("logs/teacher_task"),
    params:
        knobs=knobs(*stage_knobs("teacher_task")),
    resources:
        **res("teacher"),
    log:
        "logs/snakemake/teacher_task.log",
    benchmark:
        "benchmarks/runs/teacher_task.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.teacher_task {SEL} --teacher {T} --data {input.data} --teacher-weights {input.teacher} "
        "--features {input.features} --out {output.model} --live {output.live} > {log} 2>&1"
