"""What every rule's script does around its step (torch-free).

A script puts its own ``src/`` first on ``sys.path`` (so the job runs the clpipe beside
the workflow that planned it), then runs its step inside :func:`job`, which

- pins the CPU kernels before anything imports torch (clpipe.cpu_isa: the same numbers
  on every x86-64 machine);
- sends the package's log to the rule's log file (clpipe.logs: an input error is one
  line, no traceback);
- once the step has written its outputs, leaves the job's receipt beside its log: its
  params' hash, its inputs' sha256 and each output's size, time and sha256
  (clpipe.receipts), which the workflow and every later step check whatever
  Snakemake's metadata says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from clpipe import receipts
from clpipe.cpu_isa import pin
from clpipe.logs import log_to


@contextlib.contextmanager
def job(smk: Any, also: Iterable[str] = ()) -> Iterator[Any]:
    """Run a rule's step for Snakemake's job object ``smk``; ``also``: files the step
    writes besides its declared outputs that later steps read (their receipt lists them)."""
    pin(smk.config.get("cpu_isa", "avx2"))
    receipt = receipts.receipt_path(smk.log[0])
    # the receipt of this job's last run lists the outputs it is about to remake; left in
    # place, a reader inside the step (a model evaluated where it is trained) would take
    # the fresh files for edited ones. A job that fails leaves none, so it runs again
    receipt.unlink(missing_ok=True)
    with log_to(smk.log[0]):
        yield smk
        params = dict(smk.params.items())
        receipts.write(receipt, smk.rule, params, [*smk.output, *also], inputs=list(smk.input))
