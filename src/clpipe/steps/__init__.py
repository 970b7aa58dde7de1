"""The workflow's steps as functions: read files, call the library, write files.

One module per kind of step, as the rules are grouped (``workflow/rules/*.smk``):
``download`` and ``prepare`` (the data steps), ``init`` (init_model), ``train``
(train_first_task, train_next_task), ``importance`` (compute_importance,
update_progress) and ``evaluate``. Each rule's script in ``src/`` unpacks Snakemake's
inputs, outputs and params and calls one function here; the same functions can be
called from Python or a notebook. ``spec`` is the job's definition (its Snakemake
params, see clpipe.plan): it alone decides the result, and its hash is stored with
every output. A step imports only what it uses, so this package imports none of them,
and a job's code fingerprint (clpipe.fingerprint) covers exactly the modules it runs.
"""
