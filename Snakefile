# RISE workflow. Every rule calls a `rise` CLI entry; the DAG is defined by params.yaml.
#   snakemake results/table4.csv --cores all              # demo preset (default)
#   snakemake results/table4.csv --config preset=paper    # paper preset
#   snakemake -n --config preset=paper all_tables         # dry run of the whole paper DAG
include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input: "results/table4.csv"


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
