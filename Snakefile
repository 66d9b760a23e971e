# GKD pipeline, Snakemake front-end. The same stages, commands, inputs and outputs as dvc.yaml
# (tests/test_dag.py checks it). Every knob lives in params.yaml; selectors can be overridden with
#   snakemake --cores all --config student=vit_s results/f2l_table.csv
# Targets: results/f2l_table.csv, results/f2f_table.csv, plots/qualitative.png (all three: `rule all`),
# and the opt-in results/ablation_table.csv.
configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/methods.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/f2l_table.csv",
        "results/f2f_table.csv",
        "plots/qualitative.png",
