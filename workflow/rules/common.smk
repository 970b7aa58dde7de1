# Config validation, the results layout and the input functions (thin wrappers around
# clpipe.plan, which the unit tests exercise).
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from snakemake.io import apply_wildcards
from snakemake.logging import logger

from clpipe import plan, progress, receipts, report_page, run_folder
from clpipe.catalog import DATASETS
from clpipe.config import validate_config
from clpipe.layout import SCRATCH
from clpipe.config_input import NAME as NAME_PATTERN
from clpipe.config_input import check_config_files, check_data_dir, normalized_path
from clpipe.data_checks import DataChecks
from clpipe.errors import InputError, file_system_message
from clpipe.gpus import allocated_gpus, machine_has_gpu
from clpipe.resources import lowered_threads, lowered_threads_message, resource


def refuse(message):
    """Stop before any job runs with one message and no traceback: what is wrong with
    the input and what to do (a WorkflowError would print the workflow's lines too)."""
    logger.error(message)
    sys.exit(1)


@contextmanager
def refused_on_bad_input(prefix=""):
    """Bad input (clpipe.errors.InputError) or a file system error met inside: refused
    with its message, ``prefix`` first."""
    try:
        yield
    except InputError as err:
        refuse(f"{prefix}{err}")
    except OSError as err:
        refuse(file_system_message(err))


# The config files read again strictly, the JSON schema (which also fills in defaults),
# the checks a schema cannot express, one spelling per folder and a results folder that
# is safe to write: all before any job is planned.
with refused_on_bad_input("invalid configuration: "):
    check_config_files(workflow.configfiles)
    EXPERIMENTS = validate_config(
        config, workflow.source_path("../schemas/config.schema.yaml")
    )
    config["results_dir"] = normalized_path(config["results_dir"])
    config["data_dir"] = normalized_path(config["data_dir"])
    check_data_dir(config["data_dir"])
    run_folder.check_results_dir(
        config["results_dir"],
        config["data_dir"],
        SRC.parent,
        config["allow_foreign_files"],
    )

# the jobs the run makes, counted from its experiments before anything is planned
too_many = plan.too_many_jobs(
    plan.run_job_count(EXPERIMENTS, config.get("run") or list(EXPERIMENTS)),
    config["max_jobs"],
)
if too_many:
    refuse(f"invalid configuration: config key 'max_jobs': {too_many}")

LAYOUT = plan.Layout(config["results_dir"])
DATA_DIR = config["data_dir"]
DRY_RUN = workflow.output_settings.dryrun  # workflow.dryrun is not known yet here

RESOURCES = config["resources"]
MACHINE_HAS_GPU = machine_has_gpu()
NAME = NAME_PATTERN.pattern  # the names the config allows (clpipe.config_input)
# the methods' own figures the experiments draw (plot_setting_figure); none: no name
SETTING_FIGURES = plan.setting_figure_pattern(EXPERIMENTS.values())


wildcard_constraints:
    experiment=NAME,
    seed=r"\d+",
    task=r"\d+",
    owner=NAME,
    method=NAME,
    # an arm's own node, never the shared scratch models
    arm=f"(?!{SCRATCH}/){NAME}",


def node(name, owner="{owner}", task="{task}"):
    """A file of one trained model (a node), with wildcards where the rule leaves them open."""
    return LAYOUT.node_file("{experiment}", "{seed}", owner, task, name)


def experiment_file(name):
    return LAYOUT.experiment_file("{experiment}", name)


def experiment_report(name, caption, subcategory, **labels):
    """An experiment's file, shown in Snakemake's report under the experiment's category
    with its caption (workflow/report/<caption>.rst)."""
    return report(
        experiment_file(name),
        caption=f"../report/{caption}.rst",
        category="{experiment}",
        subcategory=subcategory,
        labels=labels,
    )


def experiment(wildcards):
    try:
        return EXPERIMENTS[wildcards.experiment]
    except KeyError:
        refuse(
            f"no experiment {wildcards.experiment!r} in the config "
            f"(experiments: {', '.join(EXPERIMENTS)})"
        )


def run_experiments():
    return config.get("run") or list(EXPERIMENTS)


def all_outputs():
    outputs = []
    for name in run_experiments():
        # the manifests too: every run checks the data files' md5 sums first
        outputs += plan.dataset_manifests(LAYOUT, EXPERIMENTS[name])
        outputs += LAYOUT.aggregate_outputs(name).values()
        outputs += plan.figure_files(LAYOUT, EXPERIMENTS[name])
    return outputs


def owner_method(experiment, owner):
    """The method type of an arm of an experiment (any other owner: itself)."""
    exp = EXPERIMENTS.get(experiment)
    return exp.method_of(owner)["type"] if exp and owner in exp.arms else owner


def estimate_run_time():
    """Say how long the run takes, before and while it runs (clpipe.progress); not for
    --touch, which runs nothing."""
    if not workflow.is_main_process or workflow.touch:
        return
    remote = not workflow.local_exec
    settings = workflow.resource_settings
    times = progress.RunTimes(
        lambda: workflow.dag,
        LAYOUT.results,
        run_experiments(),
        owner_method,
        slots=(settings.nodes if remote else settings.cores) or 1,
        per_core=not remote,
        dry_run=DRY_RUN,
        say=logger.info,
    )
    logger.addHandler(times)


def building_report():
    """Whether this is `snakemake --report`: Snakemake 9.27 reads the workflow before it
    decides to build a report and tells it nothing, so its command line says."""
    return any(a == "--report" or a.startswith("--report=") for a in sys.argv)


def report_first_page():
    """`snakemake --report`: the report opens on the results of the experiments the
    config runs (clpipe.report_page), or is refused, naming those without results and
    the command that builds it for those with. Its page is written to a temporary file
    once the results are there (with --report-after-run: after the run)."""
    names = run_experiments()
    missing = report_page.missing_results(LAYOUT, names)
    after_run = "--report-after-run" in sys.argv
    if missing and not after_run:
        finished = [n for n in names if n not in missing]
        why = report_page.refusal(missing, finished, workflow.configfiles)
        refuse(f"cannot build the report: {why}")
    page = Path(tempfile.mkdtemp(prefix="clpipe-report-")) / "results.rst"

    def write():
        descriptions = {n: EXPERIMENTS[n].raw.get("description", "") for n in names}
        page.write_text(report_page.overview(LAYOUT, descriptions, "clpipe results"))

    if not missing:
        write()
    workflow.report(str(page))
    open_report_on_results()
    return write


def open_report_on_results():
    """The report's way of being built: only from results that are up to date, opening
    on them.

    Snakemake 9.27's report opens on the rule graph unless it has metadata
    (--report-metadata), and it centres a page taller than the window, out of reach of
    scrolling: this workflow's report gets its own metadata and stylesheet
    (workflow/report/) where the command line gives neither (a profile cannot: its
    paths are read after --directory changed the working directory). And a report of
    tables that a run would remake tells an old story: it is refused while any job is
    out of date (a changed setting or code, an edited or missing file, a failed job's
    model). What follows is Snakemake's own create_report, with that check between
    building the DAG and writing the report."""
    from snakemake.report import auto_report

    metadata = workflow.source_path("../report/metadata.yaml")
    stylesheet = workflow.source_path("../report/style.css")

    def create_report(report_plugin, report_settings, global_report_settings):
        if global_report_settings.metadata_template is None:
            global_report_settings.metadata_template = metadata
        if getattr(report_settings, "stylesheet_path", "") is None:
            report_settings.stylesheet_path = Path(stylesheet)
        workflow._prepare_dag(
            forceall=workflow.dag_settings.forceall,
            ignore_incomplete=False,
            lock_warn_only=False,
        )
        workflow._build_dag()
        stale = report_page.out_of_date(workflow.dag.needrun_jobs())
        if stale:
            refuse(report_page.stale_refusal(stale, workflow.configfiles))
        workflow.async_run(
            auto_report(
                workflow.dag, report_plugin, report_settings, global_report_settings
            )
        )

    workflow.create_report = create_report


def res(kind, key):
    """A resource of a kind of step, as the job's experiment sets it (or the top level);
    a retried job's runtime is the config's times the attempt (clpipe.resources)."""

    def value(wildcards, attempt):
        name = wildcards.get("experiment")
        return resource(EXPERIMENTS, RESOURCES, kind, key, name, attempt)

    return value


def limit_gpus_inside_a_cluster_job():
    """Inside a cluster job, its steps share the GPUs the scheduler gave it.

    The SLURM plugin starts a group job in its allocation with the group's steps but
    without --resources (snakemake-executor-plugin-slurm 2.8), so there the group's
    parallel GPU steps would be summed (--gpus=2 in a --gpus=1 allocation, refused by
    srun). With the allocation's GPU count as the limit they run one after the other, as
    the submission's own calculation (profiles/slurm: gpu scoped local, limit 1) planned.
    """
    if workflow.is_main_process:
        return
    if workflow.global_resources.get("gpu").value is None:
        workflow.register_resource("gpu", allocated_gpus())


def hold_results_folder():
    """One run at a time in a results folder (clpipe.run_folder), taken once every check
    has passed; a dry run takes nothing and writes nothing."""
    if not workflow.is_main_process or DRY_RUN:
        return
    with refused_on_bad_input():
        run_folder.hold(LAYOUT.results)
        run_folder.mark(LAYOUT.results)


def check_threads():
    """Name, before any job runs, the steps whose threads Snakemake would lower below
    the config's (--cores, --max-threads): refused unless allow_fewer_threads is set."""
    if not workflow.is_main_process:
        return
    found = lowered_threads(
        EXPERIMENTS,
        run_experiments(),
        workflow.resource_settings.cores,
        workflow.resource_settings.max_threads,
    )
    if not found:
        return
    if DRY_RUN:
        logger.warning(
            "dry run: "
            + lowered_threads_message(found, allowed=True).split(". ")[0]
            + " (a dry run without --cores assumes 1)"
        )
    elif config["allow_fewer_threads"]:
        logger.warning(lowered_threads_message(found, allowed=True))
    else:
        refuse(lowered_threads_message(found, allowed=False))


# the data files' checks, each worked out once per DAG (clpipe.data_checks)
DATA_CHECKS = DataChecks(
    DATA_DIR,
    LAYOUT,
    verify=config["verify_release_md5"],
    write_caches=not DRY_RUN,
    warn=logger.warning,
)


def dataset_checksums(dataset):
    """md5 of each of the dataset's files; one that is not the release's stops the run
    here, while the DAG is built (with verify_release_md5: false, a warning)."""
    with refused_on_bad_input():
        return DATA_CHECKS.checksums(dataset)


def prepare_data_spec(wildcards):
    """The data step's spec, with the md5 of each file that is not the release's and
    the content of the config's own datasets (a changed file rebuilds the data)."""
    exp = experiment(wildcards)
    with refused_on_bad_input():  # a file that is not the release's
        DATA_CHECKS.unreleased_files(exp)
    with refused_on_bad_input(
        "invalid configuration: "
    ):  # a dataset of the config's, gone
        return DATA_CHECKS.data_spec(exp)


def code(script, method=None, besides=None):
    """A job's rerun trigger for the code it runs (plan.job_code_of): the clpipe modules
    its script imports, recursively, its method's module, and the user's own method or
    model it runs, if any. ``method``: the method type, or how the job's wildcards name
    it. ``besides``: a script whose modules are left out (see download_data)."""
    path = str(SRC / script)
    other = str(SRC / besides) if besides else None

    def value(wildcards):
        kind = method(wildcards) if callable(method) else method
        exp = experiment(wildcards) if "experiment" in wildcards.keys() else None
        return plan.job_code_of(path, exp, kind, other)

    return value


def arm_method(wildcards):
    return experiment(wildcards).method_of(wildcards.arm)["type"]


def named_method(wildcards):
    return experiment(wildcards).methods[wildcards.method]["type"]


def gpus(wildcards):
    """Steps that run a model ask for a GPU, unless the config's device is the CPU, or
    it is auto and this run's jobs run here, on a machine without one (a cluster's
    compute nodes may have GPUs the submitting node lacks: they keep asking)."""
    if config["device"] == "cpu":
        return 0
    here = workflow.local_exec and workflow.is_main_process
    return 0 if config["device"] == "auto" and here and not MACHINE_HAS_GPU else 1


def model_group(owner=None, task=None):
    """The job group of one model: the step that makes it and the short steps that read
    only it (evaluation, importance) become one cluster job, so a cluster run submits
    one job per trained model, not four. Groups only matter off the local machine;
    a group cannot span models, since importance steps run between trainings."""

    def name(wildcards):
        who = owner or wildcards.get("owner") or wildcards.get("arm")
        when = wildcards.task if task is None else task
        return f"model_{wildcards.experiment}_seed{wildcards.seed}_{who}_task{when}"

    return name


# --- input functions -------------------------------------------------------------


def checked(rule_name, inputs=None):
    """A rule's input function (``inputs``, or none) that also reruns the job, and what
    follows, when its outputs are not what the current config and code make: its
    receipt records other params, or none, or an output changed after the job wrote it
    (clpipe.receipts), whatever Snakemake's metadata in .snakemake/ says. The job's
    outputs join the files Snakemake forces, as --forcerun would (Snakemake 9.27 forces
    its incomplete files the same way). With --touch the results are accepted instead:
    their receipts are written afresh for the current params."""
    # the rule's name as the workflow knows it: prefixed where another workflow uses this
    # one as a module (use rule * from clpipe as clpipe_*); known only while the rule is
    # defined, not when the input function runs
    rule_name = workflow.modifier.modify_rulename(rule_name)

    def input_files(wildcards):
        with refused_on_bad_input():  # every input function's: one line, no traceback
            found = inputs(wildcards) if inputs is not None else {}
            why, outputs = receipts.check_job(
                workflow.get_rule(rule_name),
                wildcards,
                lambda pattern: apply_wildcards(pattern, wildcards),
                inputs=found.values() if isinstance(found, dict) else found,
                accept=workflow.touch,
                write_receipt=not DRY_RUN,
            )
        if why:
            logger.warning(f"rerunning {rule_name}: {'; '.join(why)}")
            workflow.dag.forcefiles.update(outputs)
        return found

    return input_files


def dataset_manifests(wildcards):
    """The data step's manifests, ancient while the dataset's files are the release's
    (clpipe.data_checks.DataChecks.manifests)."""
    with refused_on_bad_input():
        found = DATA_CHECKS.manifests(experiment(wildcards))
    return [ancient(path) if is_ancient else path for path, is_ancient in found]


def node_inputs(plan_inputs):
    """The input function of a step on one node (an arm's or owner's model after a task,
    with the method where the step has one), from its wildcards: ``plan_inputs`` given
    the layout, the experiment, the seed, the owner, the task and the method."""

    def inputs(wildcards):
        exp = experiment(wildcards)
        method = ()
        if "method" in wildcards.keys():
            if wildcards.method not in exp.methods:
                refuse(f"experiment {exp.name!r} has no method {wildcards.method!r}")
            method = (wildcards.method,)
        owner = wildcards.get("owner") or wildcards.get("arm")
        return plan_inputs(
            LAYOUT, exp, int(wildcards.seed), owner, int(wildcards.task), *method
        )

    return inputs


def evaluation_inputs(wildcards):
    return plan.evaluation_files(LAYOUT, experiment(wildcards))


def history_inputs(wildcards):
    return plan.history_files(LAYOUT, experiment(wildcards))
