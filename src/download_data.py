"""Rule download_data: check a dataset in data_dir, download it if missing, write its md5s."""

import sys

smk = snakemake  # noqa: F821 -- the job object Snakemake injects into scripts
# this workflow's clpipe (src/, beside this script) first, ahead of any installed one
sys.path.insert(0, smk.scriptdir)

from clpipe.cpu_isa import pin  # noqa: I001 -- before anything imports torch

pin(smk.config.get("cpu_isa", "avx2"))

from clpipe.logs import log_to
from clpipe.steps.download import download_data

with log_to(smk.log[0]):
    download_data(
        data_dir=smk.params.data_dir,
        dataset=smk.wildcards.dataset,
        manifest=smk.output.manifest,
        verify_release_md5=smk.config["verify_release_md5"],
    )
