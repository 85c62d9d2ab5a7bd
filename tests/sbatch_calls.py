"""Runs a Snakemake dry run and writes, as JSON, the sbatch call that the SLURM executor plugin would
make for each job it would submit (the plugin's own functions; no cluster needed).

    python tests/sbatch_calls.py OUT.json <snakemake arguments, e.g. all_tables --profile ... -n>
"""
import json
import sys
from types import SimpleNamespace

from snakemake.executors import dryrun
from snakemake_executor_plugin_slurm import Executor as SlurmExecutor
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

JOBS = []
_dry_run_job = dryrun.Executor.run_job


def run_job(self, job):
    # a dry run executes everything "locally": ask which rules a cluster run would keep on the submit host
    local = job.rule.name in job.dag.workflow._localrules or job.rule.norun
    entry = {"rule": job.rule.name, "wildcards": dict(job.wildcards), "local": local}
    if not local:
        # as SlurmExecutor.run_job builds it, minus the account lookup (sacctmgr) and the command itself
        partition = SlurmExecutor.get_partition_arg(SimpleNamespace(_partitions=None, _fallback_partition=None), job)
        params = {"run_uuid": "RUN", "slurm_logfile": f"runs/slurm/rule_{job.rule.name}/%j.log",
                  "comment_str": f"rule_{job.rule.name}", "account": " -A ACCOUNT", "partition": partition,
                  "workdir": "."}
        entry["sbatch"] = get_submit_command(job, params) + set_gres_string(job)
        job.attempt = 3  # as Snakemake resubmits it after two failures (`retries: 2`)
        entry["sbatch_third_try"] = get_submit_command(job, params) + set_gres_string(job)
        job.attempt = 1
    JOBS.append(entry)
    return _dry_run_job(self, job)


if __name__ == "__main__":
    out = sys.argv[1]
    dryrun.Executor.run_job = run_job
    from snakemake.cli import main

    try:
        main(sys.argv[2:])
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    with open(out, "w") as fh:
        json.dump(JOBS, fh, indent=1)
    sys.exit(code)
