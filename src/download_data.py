"""Rule download_data: check a dataset in data_dir, download it if missing, write its md5s."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 -- this workflow's clpipe (src/) first

from clpipe.steps.job import job

with job(snakemake) as smk:  # noqa: F821 -- pins the CPU kernels, then the steps import torch
    from clpipe.steps.download import download_data

    download_data(
        data_dir=smk.params.data_dir,
        dataset=smk.wildcards.dataset,
        manifest=smk.output.manifest,
        verify_release_md5=smk.config["verify_release_md5"],
    )
