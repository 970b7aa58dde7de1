"""The data files' checks while the DAG is built: the release md5 sums of the built-in
datasets and the content of the config's own, each worked out once per DAG.

The workflow (workflow/rules/common.smk) only calls these: the data step's spec
(:meth:`DataChecks.data_spec`) carries the md5 of every file that is not the release's
and the content of the config's own datasets, so a changed file reruns the data step and
what follows while a touched one reruns nothing; a file that differs from the release
stops the run before any job starts (a failing data job would delete its own outputs).
Torch-free: Snakemake imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clpipe import plan
from clpipe.catalog import DATASETS, checksums, manifest_is_ancient, release_mismatch, unreleased
from clpipe.errors import InputError
from clpipe.experiment import Experiment
from clpipe.layout import Layout
from clpipe.user_datasets import content


class ReleaseMismatch(InputError):
    """A dataset file is not the release's and ``verify_release_md5`` is on."""


class DataChecks:
    """The checks of one DAG: ``verify``: the config's ``verify_release_md5``;
    ``write_caches``: false in a dry run (the md5 caches stay as they are); ``warn``:
    where a file used though it is not the release's is named."""

    def __init__(
        self,
        data_dir: str | Path,
        layout: Layout,
        verify: bool,
        write_caches: bool,
        warn: Callable[[str], Any],
    ) -> None:
        self.data_dir = str(data_dir)
        self.layout = layout
        self.verify = verify
        self.write_caches = write_caches
        self.warn = warn
        self._checksums: dict[str, dict[str, str]] = {}
        self._content: dict[str, str] = {}

    def checksums(self, dataset: str) -> dict[str, str]:
        """md5 of each of the built-in dataset's files in data_dir; a file that is not
        the release's raises :class:`ReleaseMismatch`, or with ``verify`` off is named
        through ``warn`` (generated test files cannot match the release)."""
        if dataset not in self._checksums:
            cache = self.layout.checksum_cache()
            sums = checksums(self.data_dir, dataset, cache, write_cache=self.write_caches)
            for rel, md5 in unreleased(dataset, sums).items():
                message = release_mismatch(self.data_dir, dataset, rel, md5, self.verify)
                if self.verify:
                    raise ReleaseMismatch(message)
                self.warn(message)
            self._checksums[dataset] = sums
        return self._checksums[dataset]

    def unreleased_md5(self, dataset: str) -> dict[str, str]:
        """{file: md5} of the dataset's files whose content is not the release's; empty
        for the release and for an image folder (no release sums: returned before
        fingerprinting it again, a stat of every image, for each experiment)."""
        if not DATASETS[dataset].files:
            return {}
        return unreleased(dataset, self.checksums(dataset))

    def unreleased_files(self, exp: Experiment) -> dict[str, str]:
        """{file: md5} of the files of the built-in datasets the experiment reads whose
        content is not the release's (:meth:`unreleased_md5`, for each)."""
        changed: dict[str, str] = {}
        for dataset in built_in_datasets(exp):
            changed.update(self.unreleased_md5(dataset))
        return changed

    def user_dataset_contents(self, exp: Experiment) -> dict[str, str]:
        """{dataset: content} of the config's own datasets the experiment reads
        (:func:`clpipe.user_datasets.content`); one that is gone raises its
        :class:`~clpipe.errors.InputError`, naming its key."""
        for name, ds in exp.datasets.items():
            if name not in self._content:
                cache = self.layout.user_datasets_cache()
                self._content[name] = content(ds, cache, write_cache=self.write_caches)
        return {name: self._content[name] for name in sorted(exp.datasets)}

    def data_spec(self, exp: Experiment) -> dict[str, Any]:
        """The data step's spec: what it builds (:func:`clpipe.plan.data_spec`), the md5
        of each file it reads that is not the release's, and the content of the config's
        own datasets it reads (which have no manifest)."""
        spec = plan.data_spec(exp)
        changed = self.unreleased_files(exp)
        if changed:
            spec["unreleased_md5"] = changed
        if exp.datasets:
            spec["dataset_content"] = self.user_dataset_contents(exp)
        return spec

    def manifests(self, exp: Experiment) -> list[tuple[str, bool]]:
        """(manifest, ancient) of each built-in dataset the experiment reads: ancient
        while its files are the release's (the manifest's checksums, not its mtime, say
        what the data are, and rechecking the files retrains nothing); a dataset with
        files that are not the release's reruns the data step whenever its manifest is
        rewritten: its files' content changed."""
        datasets = built_in_datasets(exp)
        return [(self.layout.manifest(d), manifest_is_ancient(self.unreleased_md5(d))) for d in datasets]


def built_in_datasets(exp: Experiment) -> list[str]:
    """The built-in datasets an experiment reads (the config's own have no manifest)."""
    return sorted({t.dataset for t in exp.tasks} - set(exp.datasets))
