"""The headline reference's first model, trained again, has the committed weights."""

import json

import pytest

from clpipe.reference import WEIGHTS, weights_digest
from conftest import ROOT, snakemake, write_config

REFERENCE = ROOT / "results" / "reference"


@pytest.mark.slow
def test_the_headline_s_first_training_gives_the_committed_weights_bit_for_bit(tmp_path, data_dir):
    """Trained again here, the first seed's task-1 model of the headline reference has the
    weights the reference run made (CPU kernels pinned to AVX2: clpipe.cpu_isa), on
    whichever x86-64 machine runs the suite."""
    ((model, digest),) = json.loads((REFERENCE / "split_mnist_quick" / WEIGHTS).read_text()).items()
    cfg = write_config(
        tmp_path / "config.yaml",
        ROOT / "config/quick.yaml",
        data_dir=str(data_dir),
        run=["split_mnist_quick"],
    )
    snakemake(tmp_path, "--cores", "2", f"results/split_mnist_quick/{model}", "--configfile", str(cfg))
    assert weights_digest(tmp_path / "results" / "split_mnist_quick" / model) == digest
