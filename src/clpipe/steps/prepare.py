"""Step prepare_data: decode an experiment's tasks into one tensor file, once."""

from __future__ import annotations

import logging
import time
from typing import Any

from clpipe import io
from clpipe.data.tasks import build_tasks
from clpipe.provenance import provenance

log = logging.getLogger("clpipe")


def prepare_data(data_dir: str, spec: dict[str, Any], output: str) -> None:
    t0 = time.perf_counter()
    tasks = build_tasks(data_dir, spec)
    io.save(output, "tasks", provenance("prepare_data", spec), tasks=tasks, spec=spec)
    log.info("wrote %s in %.1f s", output, time.perf_counter() - t0)
