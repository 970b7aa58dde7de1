"""Rule prepare_data: decode an experiment's tasks into one tensor file, once."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.logs import log_to
from clpipe.steps.prepare import prepare_data

with log_to(smk.log[0]):
    prepare_data(
        data_dir=smk.params.data_dir,
        spec=smk.params.spec,
        output=smk.output.data,
    )
