"""The data files' checks the workflow makes while it builds the DAG (clpipe.data_checks)."""

import pytest
import yaml

from clpipe import data_checks
from clpipe.catalog import dataset_info
from clpipe.config import ConfigError, validate_config
from clpipe.data_checks import DataChecks, ReleaseMismatch
from clpipe.layout import Layout
from clpipe.md5_cache import md5sum
from conftest import ROOT, SCHEMA
from helpers.cifar_files import make_cifar10, make_cifar100
from helpers.user_data_files import save_tensor_file


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A data dir with generated CIFAR trees (files in the releases' format, not theirs)
    and no MNIST: missing files are the download step's, not a mismatch."""
    root = tmp_path_factory.mktemp("cifar")
    make_cifar10(root, per_class_per_batch=2, test_per_class=1)
    make_cifar100(root, train_per_class=1, test_per_class=1)
    return root


def four_datasets():
    cfg = yaml.safe_load((ROOT / "tests/configs/four_datasets_tiny.yaml").read_text())
    return validate_config(cfg, str(SCHEMA))["four_datasets_tiny"]


def checks(data_dir, tmp_path, verify, warnings=None, write_caches=True):
    warn = warnings.append if warnings is not None else print
    return DataChecks(data_dir, Layout(str(tmp_path / "results")), verify, write_caches, warn)


def test_a_file_that_is_not_the_releases_stops_the_run_naming_it_and_the_switch(generated, tmp_path):
    with pytest.raises(ReleaseMismatch, match=r"cifar-10-batches-py/\w+: md5 \w+ does not match") as err:
        checks(generated, tmp_path, verify=True).unreleased_files(four_datasets())
    assert "verify_release_md5: false" in str(err.value)


def test_with_the_switch_off_each_such_file_is_named_once_and_its_md5_is_in_the_spec(
    generated, tmp_path, monkeypatch
):
    reads = []
    real = data_checks.checksums
    monkeypatch.setattr(data_checks, "checksums", lambda *a, **k: reads.append(a[1]) or real(*a, **k))
    warnings = []
    c = checks(generated, tmp_path, verify=False, warnings=warnings)
    exp = four_datasets()
    spec = c.data_spec(exp)
    c.data_spec(exp), c.manifests(exp)  # asked again: read once per DAG
    expected = {
        rel: md5sum(generated / rel) for name in ("cifar10", "cifar100") for rel in dataset_info(name).files
    }
    assert spec["unreleased_md5"] == expected
    assert sorted(reads) == ["cifar10", "cifar100", "fashion_mnist", "mnist"]
    assert len(warnings) == len(expected) and all(
        "used anyway (verify_release_md5: false)" in w for w in warnings
    )
    # the manifests of datasets with such files are not ancient: a changed file reruns the data
    ancient = {path.split("/")[-1]: old for path, old in c.manifests(exp)}
    assert ancient == {
        "cifar10.md5": False,
        "cifar100.md5": False,
        "fashion_mnist.md5": True,
        "mnist.md5": True,
    }


def test_the_release_gives_the_plain_spec_and_ancient_manifests(data_dir, tmp_path):
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    exp = validate_config(cfg, str(SCHEMA))["tiny"]
    c = checks(data_dir, tmp_path, verify=True, write_caches=False)
    assert "unreleased_md5" not in c.data_spec(exp) and "dataset_content" not in c.data_spec(exp)
    assert c.manifests(exp) == [(str(tmp_path / "results/datasets/mnist.md5"), True)]
    assert not (tmp_path / "results").exists()  # a dry run's checks write no cache


def own_dataset(tmp_path):
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    exp = cfg["experiments"]["tiny"]
    exp.update(scenario="class", dataset="digits", tasks=[[0], [1, 2]], input={"size": 8, "channels": 1})
    exp["model"] = {"name": "mlp", "hidden": [8]}
    exp["methods"], exp["arms"] = {}, {"joint": {"method": "joint"}}
    exp["data"] = {
        "validation_fraction": 0.25,
        "min_images_per_class": {"train": 0, "validation": 0, "test": 0},
    }
    cfg["datasets"] = {"digits": {"tensor_file": str(save_tensor_file(tmp_path / "digits.pt"))}}
    return validate_config(cfg, str(SCHEMA))["tiny"]


def test_the_config_s_own_dataset_s_content_is_in_the_spec_and_a_gone_one_names_its_key(tmp_path):
    exp = own_dataset(tmp_path)
    spec = checks(tmp_path, tmp_path, verify=True).data_spec(exp)
    assert spec["dataset_content"] == {"digits": f"md5 {md5sum(tmp_path / 'digits.pt')}"}
    assert "unreleased_md5" not in spec and spec["datasets"]["digits"]["kind"] == "tensor_file"
    (tmp_path / "digits.pt").unlink()
    with pytest.raises(ConfigError, match="no such file") as err:
        checks(tmp_path, tmp_path, verify=True).data_spec(exp)
    assert err.value.key == "datasets.digits.tensor_file"
