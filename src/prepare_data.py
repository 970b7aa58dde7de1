"""Rule prepare_data: decode an experiment's tasks into one tensor file, once."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job

with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.steps.prepare import prepare_data

    prepare_data(
        data_dir=smk.params.data_dir,
        spec=smk.params.spec,
        output=smk.output.data,
    )
