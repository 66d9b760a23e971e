rule prepare:
    input:
        code=["src/gkd/stages/prepare.py", *LIB_DATA],
    output:
        data=directory(DATA),
        samples=f"plots/{B}_samples.png",
    params:
        knobs=knobs(*stage_knobs("prepare")),
    resources:
        **res("data"),
    log:
        f"logs/snakemake/prepare_{B}.log",
    benchmark:
        f"benchmarks/runs/prepare_{B}.tsv"
    shell:
        "python -m gkd.stages.prepare {SEL} --out {output.data} --samples {output.samples} > {log} 2>&1"
