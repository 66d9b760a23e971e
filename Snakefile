# GKD pipeline, Snakemake front-end: a table of contents. Every stage comes from gkd.dag's stage table,
# which also writes dvc.yaml (tests/test_dag.py checks that both declare the same DAG). Every knob lives
# in params.yaml; selectors can be overridden with
#   snakemake --cores all results/f2l_table.csv --config student=vit_s
# Targets: results/f2l_table.csv (+ results/stage1_fidelity.csv), results/f2f_table.csv and the qualitative
# figure (all three: `rule all`); opt-in: results/f2l_seeds.csv results/f2f_seeds.csv, results/budget_table.csv,
# results/ablation_table.csv. Every output lives under its experiment's namespace (e.g.
# models/<benchmark>/<teacher>/<student>/gkd/); the tables in results/ are the selected experiment's (`view` rules).
configfile: "params.yaml"


include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        [gkd_dag.resolve(target, SELECTORS) for target in gkd_dag.default_targets(CFG)],


include: "workflow/rules/pipeline.smk"


onsuccess:
    # the main command ends with the table it made and whether stage 1 did its job (nothing on a dry run)
    from gkd.show import summary
    if any(str(t).endswith("f2l_table.csv") or t == "all" for t in (workflow.dag_settings.targets or ["all"])):
        print(summary(), flush=True)
