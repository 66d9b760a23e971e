# One rule per stage of gkd.dag's stage table (the same table writes every dvc.yaml): command, inputs
# (the stage module's import closure + the artifacts it reads), outputs and params are taken from it,
# with the selectors of Snakemake's config filled in.
for _stage in gkd_dag.stages(CFG, SHAPES):
    if _stage.always_changed:
        refresh(_stage)

    rule:
        name: _stage.name
        input:
            [gkd_dag.resolve(p, SELECTORS) for p in _stage.code + _stage.deps],
        output:
            [as_output(gkd_dag.resolve(p, SELECTORS)) for p in _stage.outputs],
        params:
            knobs=knobs(_stage.params),
            # reruns the rule when its command changes, whatever params files the run names (dvc.yaml's command)
            stage=gkd_dag.resolve(_stage.command, SELECTORS),
            # what the job runs: the command reading params.yaml and the overlays; through params because
            # `shell:` is evaluated when the job runs, after the loop ended; derived: not a rerun trigger
            command=derived(gkd_dag.resolve(_stage.command_with(" ".join(PARAMS_FILES)), SELECTORS)),
        resources:
            **res(_stage.family),
        log:
            f"logs/snakemake/{gkd_dag.resolve(_stage.namespace, SELECTORS)}/{_stage.name}.log",
        benchmark:
            f"benchmarks/runs/{gkd_dag.resolve(_stage.namespace, SELECTORS)}/{_stage.name}.tsv"
        threads: THREADS
        shell:
            "{params.command} > {log} 2>&1"
