# RISE workflow. Every rule calls a `rise` CLI entry; the DAG is defined by params.yaml.
#   snakemake results/table4.csv --cores all                        # demo preset (default)
#   snakemake results/table4.csv --cores all --config preset=paper  # paper preset
#   snakemake -n all_tables --config preset=paper                   # dry run of the whole paper DAG
#   snakemake results/toy/table4.csv --cores all --config preset=toy  # the toy world (docs/toy.md)
# Targets go before --config, which takes every word after it up to the next option.
include: "workflow/rules/common.smk"

report: "workflow/report/workflow.rst"  # snakemake --report report.zip <targets>: tables, curves, figures


rule all:
    default_target: True
    input: "results/table4.csv"


include: "workflow/rules/toy.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
