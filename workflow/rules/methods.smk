# Method rows, for every setting (F2L; F2F with a VFM-style student; the GKD ablations): stage 1
# (distill) and stage 2 (adapt) for methods with a label-free stage, one-stage task training for the
# others (`train` without a teacher, `train_kd` with cached teacher outputs), then evaluation. Which
# method goes where is the method's own declaration (gkd.distill); settings come from gkd.dag.
for st in SETTINGS:
    group = PLAN["groups"][st.name]
    student_sel = CFG.f2f.student if st.name == "f2f" else S
    student_dir = f"models/students/{student_sel}"
    pair = f"{SEL} --teacher {T} --student {student_sel}"
    sp, pre = st.stage_prefix, st.prefix

    if st.name == "f2f":
        rule:
            name: "f2f_student_weights"
            input:
                code=["src/gkd/stages/student_weights.py", "src/gkd/stages/teacher_weights.py", *LIB_TRAIN],
                data=DATA,
            output:
                directory(student_dir),
            params:
                knobs=knobs(*stage_knobs("f2f_student_weights")),
                sel=SEL,
                student=student_sel,
            resources:
                **res("teacher"),
            log:
                f"logs/snakemake/student_weights_{student_sel}.log",
            benchmark:
                f"benchmarks/runs/student_weights_{student_sel}.tsv"
            threads: THREADS
            shell:
                "{LAUNCH} gkd.stages.student_weights {params.sel} --student {params.student} --data {input.data} "
                "--out {output} > {log} 2>&1"

    rule:
        name: f"{sp}distill"
        wildcard_constraints:
            method=one_of(group["stage1"]),
        input:
            code=["src/gkd/stages/distill.py", *LIB_METHODS],
            data=DATA,
            student=student_dir,
            features=FEATURES,
        output:
            model=directory(f"models/{pre}{{method}}/stage1"),
            live=directory(f"logs/{pre}{{method}}/stage1"),
        params:
            knobs=knobs(*stage_knobs(f"{sp}distill")),
            pair=pair,
        resources:
            **res("train"),
        log:
            f"logs/snakemake/{sp}distill_{{method}}.log",
        benchmark:
            f"benchmarks/runs/{sp}distill_{{method}}.tsv"
        threads: THREADS
        shell:
            "{LAUNCH} gkd.stages.distill {params.pair} --method {wildcards.method} --data {input.data} "
            "--student-weights {input.student} --features {input.features} --out {output.model} "
            "--live {output.live} > {log} 2>&1"

    rule:
        name: f"{sp}adapt"
        wildcard_constraints:
            method=one_of(group["stage1"]),
        input:
            code=["src/gkd/stages/adapt.py", *LIB_METHODS],
            data=DATA,
            init=f"models/{pre}{{method}}/stage1",
        output:
            model=directory(f"models/{pre}{{method}}/stage2"),
            live=directory(f"logs/{pre}{{method}}/stage2"),
        params:
            knobs=knobs(*stage_knobs(f"{sp}adapt")),
            pair=pair,
        resources:
            **res("train"),
        log:
            f"logs/snakemake/{sp}adapt_{{method}}.log",
        benchmark:
            f"benchmarks/runs/{sp}adapt_{{method}}.tsv"
        threads: THREADS
        shell:
            "{LAUNCH} gkd.stages.adapt {params.pair} --method {wildcards.method} --data {input.data} "
            "--init {input.init} --out {output.model} --live {output.live} > {log} 2>&1"

    rule:
        name: f"{sp}train"
        wildcard_constraints:
            method=one_of(group["plain"]),
        input:
            code=["src/gkd/stages/adapt.py", *LIB_METHODS],
            data=DATA,
            init=student_dir,
        output:
            model=directory(f"models/{pre}{{method}}/stage2"),
            live=directory(f"logs/{pre}{{method}}/stage2"),
        params:
            knobs=knobs(*stage_knobs(f"{sp}train")),
            pair=pair,
        resources:
            **res("train"),
        log:
            f"logs/snakemake/{sp}train_{{method}}.log",
        benchmark:
            f"benchmarks/runs/{sp}train_{{method}}.tsv"
        threads: THREADS
        shell:
            "{LAUNCH} gkd.stages.adapt {params.pair} --method {wildcards.method} --data {input.data} "
            "--init {input.init} --out {output.model} --live {output.live} > {log} 2>&1"

    rule:
        name: f"{sp}train_kd"
        wildcard_constraints:
            method=one_of(group["kd"]),
        input:
            code=["src/gkd/stages/adapt.py", *LIB_METHODS],
            data=DATA,
            init=student_dir,
            teacher_task=TEACHER_TASK,
            features=FEATURES,
        output:
            model=directory(f"models/{pre}{{method}}/stage2"),
            live=directory(f"logs/{pre}{{method}}/stage2"),
        params:
            knobs=knobs(*stage_knobs(f"{sp}train_kd")),
            pair=pair,
        resources:
            **res("train"),
        log:
            f"logs/snakemake/{sp}train_kd_{{method}}.log",
        benchmark:
            f"benchmarks/runs/{sp}train_kd_{{method}}.tsv"
        threads: THREADS
        shell:
            "{LAUNCH} gkd.stages.adapt {params.pair} --method {wildcards.method} --data {input.data} "
            "--init {input.init} --teacher-task {input.teacher_task} --features {input.features} "
            "--out {output.model} --live {output.live} > {log} 2>&1"

    rule:
        name: f"{sp}evaluate"
        wildcard_constraints:
            method=one_of(st.methods),
        input:
            code=["src/gkd/stages/evaluate.py", "src/gkd/metrics.py", *LIB_TRAIN],
            data=DATA,
            model=f"models/{pre}{{method}}/stage2",
        output:
            f"metrics/{pre}{{method}}.json",
        params:
            knobs=knobs(*stage_knobs(f"{sp}evaluate")),
        resources:
            **res("evaluate"),
        log:
            f"logs/snakemake/{sp}evaluate_{{method}}.log",
        benchmark:
            f"benchmarks/runs/{sp}evaluate_{{method}}.tsv"
        threads: THREADS
        shell:
            "{LAUNCH} gkd.stages.evaluate {SEL} --model {input.model} --data {input.data} --out {output} "
            "--name {wildcards.method} > {log} 2>&1"

    rule:
        name: f"{sp}report"
        input:
            code=["src/gkd/stages/report.py", "src/gkd/plots.py"],
            metrics=["metrics/teacher.json", *(["metrics/gkd.json"] if st.name == "ablation" else []),
                     *[f"metrics/{pre}{m}.json" for m in st.methods]],
        output:
            table=f"results/{st.name}_table.csv",
            plot=f"plots/{st.name}_table.png",
            radar=f"plots/{st.name}_radar.png",
        params:
            knobs=knobs(*stage_knobs(f"{sp}report")),
            pair=pair,
            setting=st.name,
        resources:
            **res("data"),
        log:
            f"logs/snakemake/{sp}report.log",
        benchmark:
            f"benchmarks/runs/{sp}report.tsv"
        shell:
            "python -m gkd.stages.report {params.pair} --setting {params.setting} --metrics {input.metrics} "
            "--out {output.table} --plot {output.plot} --radar {output.radar} > {log} 2>&1"
