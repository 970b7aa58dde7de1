import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
# Real MNIST / Fashion-MNIST in torchvision's layout (see README: "Tests").
DATA_DIR = Path(os.environ.get("CLPIPE_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(
            f"real MNIST not found under {DATA_DIR}; set CLPIPE_DATA_DIR to a folder "
            "with MNIST/raw/*-ubyte (torchvision layout)"
        )
    return DATA_DIR
