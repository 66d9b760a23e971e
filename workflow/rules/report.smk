# The Teacher row, and the qualitative figure of the F2L models.
rule evaluate_teacher:
    input:
        code=["src/gkd/stages/evaluate.py", "src/gkd/metrics.py", *LIB_TRAIN],
        data=DATA,
        model=TEACHER_TASK,
    output:
        "metrics/teacher.json",
    params:
        knobs=knobs(*stage_knobs("evaluate_teacher")),
    resources:
        **res("evaluate"),
    log:
        "logs/snakemake/evaluate_teacher.log",
    benchmark:
        "benchmarks/runs/evaluate_teacher.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.evaluate {SEL} --model {input.model} --data {input.data} --out {output} "
        "--name teacher > {log} 2>&1"


rule qualitative:
    input:
        code=["src/gkd/stages/qualitative.py", "src/gkd/plots.py", *LIB_TRAIN],
        data=DATA,
        models=[f"models/{m}/stage2" for m in gkd_dag.QUALITATIVE if m in CFG.methods],
    output:
        "plots/qualitative.png",
    params:
        knobs=knobs(*stage_knobs("qualitative")),
    resources:
        **res("data"),
    log:
        "logs/snakemake/qualitative.log",
    benchmark:
        "benchmarks/runs/qualitative.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.qualitative {SEL} --data {input.data} --models {input.models} --out {output} "
        "> {log} 2>&1"
