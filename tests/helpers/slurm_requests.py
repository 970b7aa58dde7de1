"""What each cluster job of a run would ask SLURM for, without a cluster.

    python tests/helpers/slurm_requests.py <snakemake arguments of a dry run>

prints one JSON line per cluster job that would be submitted: its group (or None), its
rules, the resources Snakemake computes for the submission, and the plugin's own GPU and
CPU flags for sbatch (``--gpus=...``, ``--cpus-per-task=...``).

A dry run prints each step's resources, not what a group job asks for: Snakemake
computes that only for a submission (``GroupJob.resources``, which merges a group's
steps layer by layer, summing parallel steps unless a resource's scope and limit stack
them, and does it "as if local" in a dry run). So this runs the dry run in-process,
keeps the DAG it built, and then computes each group job's resources the way a cluster
executor sees them (``Workflow.local_exec`` false), and passes them through
snakemake-executor-plugin-slurm's own ``set_gres_string`` and ``get_cpu_setting``.
"""

from __future__ import annotations

import json
import sys

# isort: off
from snakemake.cli import main  # first: snakemake.dag and snakemake.workflow import each other
import snakemake.dag
import snakemake.workflow

# isort: on
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting

PLANNED = []  # [(dag, jobs to run)] when the DAG is first complete, before any job "runs"
_update_groups = snakemake.dag.DAG.update_groups


def _keep_plan(self):
    _update_groups(self)
    if not PLANNED:
        PLANNED.append((self, list(self.needrun_jobs())))


def _plain(value):
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def submissions(dag, planned) -> list[dict]:
    workflow = dag.workflow
    snakemake.workflow.Workflow.local_exec = property(lambda self: False)  # a cluster executor
    out = []
    groups = {}
    for job in planned:
        if job.group is None:
            if workflow.is_local(job.rule):
                continue  # localrules run on the submitting node
            groups[id(job)] = (None, job)
        else:
            group = dag._group[job]
            groups[id(group)] = (group.groupid, group)
    for name, job in groups.values():
        job._resources = None  # computed again, as for a submission
        job._scheduler_resources = None
        resources = {k: _plain(v) for k, v in job.resources.items() if not k.startswith("_")}
        gpu_job = bool(job.resources.get("gpu")) or "gpu" in str(job.resources.get("gres", ""))
        members = list(job.jobs) if name is not None else [job]
        out.append(
            {
                "group": name,
                "rules": sorted(j.rule.name for j in members),
                "steps": sorted(
                    ({"rule": j.rule.name, "wildcards": dict(j.wildcards_dict)} for j in members),
                    key=lambda step: (step["rule"], sorted(step["wildcards"].items())),
                ),
                "resources": resources,
                "threads": job.threads,
                # what the run counts against --resources (how many such jobs run at once)
                "scheduler_resources": sorted(k for k in job.scheduler_resources if not k.startswith("_")),
                "sbatch_gpus": set_gres_string(job).strip(),
                "sbatch_cpus": get_cpu_setting(job, gpu_job),
            }
        )
    return out


if __name__ == "__main__":
    snakemake.dag.DAG.update_groups = _keep_plan
    try:
        main(sys.argv[1:])
    except SystemExit as exit:
        if exit.code not in (0, None):
            raise
    if not PLANNED:
        sys.exit("no DAG was built")
    for record in submissions(*PLANNED[0]):
        print("SUBMISSION " + json.dumps(record, sort_keys=True))
