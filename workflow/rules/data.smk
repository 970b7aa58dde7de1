# Datasets: checked (and fetched when missing) in data_dir, then decoded once per experiment.


rule download_data:
    input:
        unpack(checked("download_data")),
    output:
        manifest=LAYOUT.manifest("{dataset}"),
    log:
        f"{LAYOUT.results}/datasets/{{dataset}}.log",
    benchmark:
        f"{LAYOUT.results}/datasets/{{dataset}}.benchmark.tsv"
    wildcard_constraints:
        dataset="|".join(DATASETS),
    # Checks the dataset's files under data_dir (md5), downloads them with torchvision
    # when missing, and writes their checksums: the manifest is what later steps depend on.
    # On a cluster it runs on the submitting node: compute nodes often cannot reach the
    # internet to fetch a dataset (a rule's own localrule, so it holds in a module too).
    localrule: True
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        # The code only download_data runs: a change of code it shares with the data
        # step reruns that step (and what follows), not this one. Snakemake 9.27 does
        # not check the own params of a job whose only link to a rerun job is an
        # ancient input (dag.py: it is masked), so the two must not change together.
        code=code("download_data.py", besides="prepare_data.py"),
        data_dir=DATA_DIR,
        # The files' md5 sums: a touched file, same content, reruns nothing; a file
        # whose content differs from the release stops the run before any job starts
        # (with verify_release_md5: false, a warning names it).
        checksums=lambda w: dataset_checksums(w.dataset),
    script:
        "../../src/download_data.py"


rule prepare_data:
    input:
        # ancient: the manifests' checksums, not their mtimes, say what the data are;
        # rechecking the files (a new manifest) retrains nothing. Not ancient for a
        # dataset whose files are not the release's (verify_release_md5: false): its
        # manifest is rewritten when their content changes (common.smk).
        unpack(checked("prepare_data", dataset_manifests)),
    output:
        data=LAYOUT.data("{experiment}"),
    log:
        f"{LAYOUT.results}/{{experiment}}/data/prepare_data.log",
    benchmark:
        f"{LAYOUT.results}/{{experiment}}/data/prepare_data.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        code=code("prepare_data.py"),
        data_dir=DATA_DIR,
        # plan.data_spec, plus the md5 of each file that is not the release's (only
        # with verify_release_md5: false): a changed generated file rebuilds the data.
        # The config's own datasets (datasets:) have no manifest nor download job: the
        # spec holds their content (clpipe.user_datasets.content) instead.
        spec=prepare_data_spec,
    script:
        "../../src/prepare_data.py"
