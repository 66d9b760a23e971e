# Evaluation on every domain, then the table and its figure.
rule evaluate_teacher:
    input:
        code=["src/gkd/stages/evaluate.py", "src/gkd/metrics.py", *LIB_TRAIN],
        data=DATA,
        model=TEACHER_TASK,
    output:
        "metrics/teacher.json",
    params:
        knobs=knobs("evaluate"),
    log:
        "logs/snakemake/evaluate_teacher.log",
    benchmark:
        "benchmarks/runs/evaluate_teacher.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.evaluate {SEL} --model {input.model} --data {input.data} --out {output} "
        "--name teacher > {log} 2>&1"


rule evaluate:
    wildcard_constraints:
        method=one_of(CFG.methods),
    input:
        code=["src/gkd/stages/evaluate.py", "src/gkd/metrics.py", *LIB_TRAIN],
        data=DATA,
        model="models/{method}/stage2",
    output:
        "metrics/{method}.json",
    params:
        knobs=knobs("evaluate"),
    log:
        "logs/snakemake/evaluate_{method}.log",
    benchmark:
        "benchmarks/runs/evaluate_{method}.tsv"
    threads: THREADS
    shell:
        "{LAUNCH} gkd.stages.evaluate {SEL} --model {input.model} --data {input.data} --out {output} "
        "--name {wildcards.method} > {log} 2>&1"


rule report:
    input:
        code="src/gkd/stages/report.py",
        metrics=["metrics/teacher.json", *expand("metrics/{method}.json", method=CFG.methods)],
    output:
        table="results/f2l_table.csv",
        plot="plots/f2l_table.png",
    params:
        knobs=knobs("methods"),
    log:
        "logs/snakemake/report.log",
    benchmark:
        "benchmarks/runs/report.tsv"
    shell:
        "python -m gkd.stages.report {SEL} --teacher {T} --student {S} --metrics {input.metrics} "
        "--out {output.table} --plot {output.plot} > {log} 2>&1"
