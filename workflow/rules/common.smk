# Shared helpers: settings, preflight and the file layout, all from the `rise` library.
import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from rise.config import config_overrides, load_settings, read_params
from rise.errors import RiseError
from rise.fingerprints import code_fingerprint, project_library
from rise.launch import local_gpus
from rise.layout import Layout
from rise.plan import stage_settings, sweep_needs, table_needs
from rise.resources import job_resources
from rise.toy.models import copies_inputs, pretrained_models

configfile: "params.yaml"

PRESET = config["preset"]  # `--config preset=paper` overrides params.yaml's value
# Every other `--config key=value` (nested: `--config 'train={learning_rate: 2.0e-6}'`) is merged over
# params.yaml as Snakemake merges it, validated like the file, and handed to every `rise` call.
OVERRIDES = {k: v for k, v in config_overrides(config, read_params("params.yaml")).items() if k != "preset"}
try:
    S = load_settings("params.yaml", PRESET, overrides=OVERRIDES)  # schema-validated at start-up
except RiseError as exc:
    raise WorkflowError(str(exc))
L = S.layout
# The presets this run can build: the chosen one, its pretraining draws (`draws`, rise/config.py:
# `<preset>-draw<seed>`) and its weaker judges (`judges`: `<preset>-judge<steps>`). The rules of a
# table's chain take the preset as the wildcard {preset} of their paths (`LP`), so one rule serves
# every copy; `SETTINGS[wildcards.preset]` is its settings.
try:
    SETTINGS = {PRESET: S, **{name: load_settings("params.yaml", name, overrides=OVERRIDES)
                              for name in [*S.draws.values(), *S.judges.values()] if name != PRESET}}
except RiseError as exc:
    raise WorkflowError(str(exc))
LP = Layout("{preset}", primary_seed=L.primary_seed)
OVERRIDES_ARG = f" --overrides {shlex.quote(json.dumps(OVERRIDES, sort_keys=True))}" if OVERRIDES else ""
RISE_ARGS = f"--preset {PRESET}{OVERRIDES_ARG}"
# The `rise` CLI as every rule's shell calls it. With `--software-deployment-method conda` each rule
# runs in workflow/envs/rise.yaml, whose python imports `rise` from the checkout (the working
# directory); otherwise the interpreter running Snakemake. Lint "Shell command directly uses
# variable RISE from outside of the rule" is deliberate: as a param, a new interpreter path or an
# unrelated `--config` value would rerun every job; what a job depends on is its `settings` param.
IN_CONDA = DeploymentMethod.CONDA in getattr(workflow.deployment_settings, "deployment_method", ())
RISE_CLI = f"{'python' if IN_CONDA else sys.executable} -m rise.cli"
RISE = f"{RISE_CLI} {RISE_ARGS}"
# The rules of a table's chain call `{RISE_CLI} --preset {wildcards.preset}{OVERRIDES_ARG}`: the
# preset their output names (a pretraining draw's, or the chosen one). Lint "Shell command directly
# uses variable RISE_CLI from outside of the rule" is deliberate, and Lint "Shell command directly
# uses variable OVERRIDES_ARG from outside of the rule" is deliberate, for the reason RISE's is.
ENV = "../envs/rise.yaml"  # every rule's software (relative to workflow/rules/)
# The rules that generate with vLLM run in an environment of their own (vLLM pins another torch):
# training under train.use_vllm, prediction under predict.backend: vllm.
VLLM_ENV = "../envs/rise-vllm.yaml"
TRAIN_ENV = VLLM_ENV if S.train.use_vllm else ENV
PREDICT_ENV = VLLM_ENV if S.predict.backend == "vllm" else ENV
LIBRARY = project_library(workflow.basedir)  # the checkout's rise/


def readable(settings: str) -> dict:
    """A rule's `settings` param (a stage's settings, JSON) as a mapping: the report shows it as
    Python's dict, not as escaped JSON; a changed setting still changes it, and reruns the rule."""
    return json.loads(settings)


def code(*commands):
    """A rule's `code` param: the fingerprint of what its `rise` commands run (rise/fingerprints.py),
    so a behaviour-changing edit of a module they import reruns the rule; a comment does not."""
    return code_fingerprint(commands, LIBRARY)["fingerprint"]

TRAINED = [name for name, v in S.variants.items() if v.train]
# Presets with `pretrain` (the toy world) train their three models in stages (workflow/rules/toy.smk).
PRETRAINED = {name: pretrained_models(s) if s.pretrain else {} for name, s in SETTINGS.items()}
UNTRAINED = [name for name, v in S.variants.items() if not v.train]

# A local run gets `--resources gpu=<the GPUs it sees>` unless it says otherwise, so GPU jobs never
# outnumber the devices; `rise launch` pins each one to free devices (CUDA_VISIBLE_DEVICES).
# (A cluster run, with --jobs, leaves GPUs to the scheduler.)
if workflow.is_main_process and workflow.resource_settings.nodes is None and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", len(local_gpus()))

# Cheap steps run in the Snakemake process itself, also on a cluster (no job, no queue).
localrules: all, all_tables, all_sweeps, table, table_alias, sweep, figure_sweeps, sample_train, base_policy, draws_table, all_draws, judges_table,
    figure_qualitative

wildcard_constraints:
    preset="|".join(re.escape(name) for name in SETTINGS),
    variant="|".join(S.variants),
    dataset="|".join(S.datasets),
    train_set="|".join(S.train_sets) or "NONE",
    table="|".join(S.tables),
    seed=r"\d+",
    checkpoint=r"final|step\d+",


def log_file(stage, name):
    return str(L.logs(stage, name))


def settings_of(wildcards):
    """The settings of a job's preset: its {preset} wildcard, else the chosen preset."""
    return SETTINGS[wildcards.get("preset", PRESET)]


def stage_param(stage, *names):
    """A rule's `settings` param: the stage's settings for the job's preset and wildcards `names`."""
    return lambda w: readable(stage_settings(settings_of(w), stage, *(w.get(n) for n in names)))


def train_inputs(wildcards):
    s = settings_of(wildcards)
    v = s.variants[wildcards.variant]
    inputs = {"models": str(s.layout.models_manifest())}
    if v.train:
        inputs["manifest"] = str(s.layout.train_manifest(v.train_set))
    return inputs


def cpus(stage):
    """`threads:` of a stage's jobs (rise/resources.py): cores locally, --cpus-per-task on SLURM."""
    return lambda wildcards: job_resources(settings_of(wildcards), stage, wildcards.get("variant")).cpus


def resources(stage):
    """`resources:` of a stage's jobs (rise/resources.py). Every job stays on one node; the wall time
    grows with each retry (`retries` in the SLURM profile); cpus_per_task repeats `threads` for SLURM
    because `--cores` caps threads."""
    def of(wildcards):
        return job_resources(settings_of(wildcards), stage, wildcards.get("variant"))

    return dict(gpu=lambda wildcards: of(wildcards).gpus, cpus_per_task=lambda wildcards: of(wildcards).cpus,
                mem_mb=lambda wildcards: of(wildcards).mem_mb,
                runtime=lambda wildcards, attempt: of(wildcards).runtime_min(attempt), nodes=1)


def metrics_files(needs, layout=L):
    return [str(layout.metrics(n.variant, n.dataset, n.seed, n.checkpoint)) for n in needs]


def table_inputs(wildcards):
    """Each run's metrics, and its per-family metrics where the table shows them (`by_family`)."""
    s = settings_of(wildcards)
    needs = table_needs(s, wildcards.table)
    families = [str(s.layout.family_metrics(n.variant, n.dataset, n.seed, n.checkpoint)) for n in needs]
    return metrics_files(needs, s.layout) + (families if s.tables[wildcards.table].get("by_family") else [])


def judges_inputs(wildcards):
    """Each judge's table, its runs' per-sample scores and its CLIP's report; the preset's own too."""
    return copies_inputs(S, "judges", wildcards.table)


def draws_inputs(wildcards):
    """Every draw's table, its runs' per-sample scores and its models' pretraining reports."""
    return copies_inputs(S, "draws", wildcards.table)


def sweep_inputs(wildcards):
    """Every checkpoint's metrics, and each run's policy.json (the step its `final` was saved at)."""
    runs = [str(L.policy_ref(wildcards.variant, seed)) for seed in S.seeds(wildcards.variant)]
    return metrics_files(sweep_needs(S, wildcards.variant)) + runs


onstart:
    # Real runs only (not dry runs): stop at once, naming what the preset needs and lacks.
    from rise.checks import preflight

    # only what the jobs of this run read: a table's run is not stopped for a model or dataset it never uses
    jobs = [(job.rule.name, job.wildcards_dict) for job in workflow.dag.needrun_jobs()]
    problems = []
    for name, s in SETTINGS.items():  # each preset's jobs against its own settings
        mine = [(rule, w) for rule, w in jobs if w.get("preset", PRESET) == name]
        if mine or name == PRESET:
            problems += preflight(s, need_models=not s.build_demo_models, check_gpu=workflow.local_exec, jobs=mine)
    if problems:
        print(f"\npreset '{PRESET}' cannot run here:", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        print(f"Fix the settings in params.yaml (or run `rise --preset {PRESET} check`).\n", file=sys.stderr)
        raise SystemExit(1)


def unknown_table(wildcards):
    """The input of a table target that is not a table: stops planning, naming the tables there are."""
    raise WorkflowError(f"results/{wildcards.name}.csv: not a table of preset '{PRESET}'; its tables: "
                        + ", ".join(f"results/{t}.csv" for t in S.tables) + " (tables: in params.yaml; "
                        "all of them: `snakemake all_tables`)")
