"""A step's log: the package's messages (and Python warnings) into the rule's log file.

Torch-free, so the analysis steps can use it in their light environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from clpipe.errors import InputError, file_system_message

log = logging.getLogger("clpipe")


@contextlib.contextmanager
def log_to(path: str | None) -> Iterator[logging.Logger]:
    """Send the package's log to ``path`` (the rule's log file) for the duration."""
    handlers: list[logging.Handler] = []
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)
    previous = log.level
    log.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings_log = logging.getLogger("py.warnings")
    for h in handlers:
        warnings_log.addHandler(h)
    # Which copy of the package runs: a second checkout or a stale install shows here.
    log.info("clpipe from %s", os.path.dirname(os.path.abspath(__file__)))
    # Where the job ran: the cluster's job id, if any (proof a step ran as a SLURM job).
    # With its partition and the GPUs SLURM allocated it (CUDA_VISIBLE_DEVICES).
    if os.environ.get("SLURM_JOB_ID"):
        log.info(
            "SLURM job %s on %s, partition %s, GPUs %s",
            os.environ["SLURM_JOB_ID"],
            os.environ.get("SLURMD_NODENAME", "?"),
            os.environ.get("SLURM_JOB_PARTITION", "?"),
            os.environ.get("CUDA_VISIBLE_DEVICES", "none"),
        )
    try:
        yield log
    except InputError as err:
        # the input's problem, named with its remedy: the message alone, no traceback
        log.error("%s", err)
        print(f"clpipe: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as err:  # the file system's (a folder gone, a permission, a full disk)
        message = file_system_message(err)
        log.error("%s", message)
        print(f"clpipe: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    except BaseException:
        log.exception("step failed")
        raise
    finally:
        for h in handlers:
            log.removeHandler(h)
            warnings_log.removeHandler(h)
            h.close()
        log.setLevel(previous)
