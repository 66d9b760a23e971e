# GKD pipeline, Snakemake front-end: a table of contents. Every stage comes from gkd.dag's stage table,
# which also writes dvc.yaml (tests/test_dag.py checks that both declare the same DAG). Every knob lives
# in params.yaml; selectors can be overridden with
#   snakemake --cores all results/f2l_table.csv --config student=vit_s
# Targets: results/f2l_table.csv (+ results/stage1_fidelity.csv), results/f2f_table.csv, plots/qualitative.png
# (all three: `rule all`); opt-in: results/f2l_seeds.csv results/f2f_seeds.csv, results/budget_table.csv,
# results/ablation_table.csv.
configfile: "params.yaml"


include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        "results/f2l_table.csv",
        "results/f2f_table.csv",
        "plots/qualitative.png",


include: "workflow/rules/pipeline.smk"
