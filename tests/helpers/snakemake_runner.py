"""Snakemake's own command line, many times, without paying its import each time.

    runner = SnakemakeRunner(); rc, out = runner.run([...snakemake arguments...]); runner.close()

A helper process imports Snakemake once, then forks a child per call that runs
``snakemake.cli.main(args)`` (the ``snakemake`` command itself) with its output in a
file. Starting ``python -m snakemake`` costs about a second on the development machine,
mostly imports; a fork costs milliseconds, so the table of refused configs in
tests/workflow/test_faults.py runs through the real command line fast. Only for runs that start
no job (the refusals): a job would run in the child like in any Snakemake process.
"""

from __future__ import annotations

import json
import subprocess
import sys

SERVER = r"""
import json, os, sys, tempfile
import snakemake.cli  # the import paid once
for line in sys.stdin:
    request = json.loads(line)
    out = tempfile.NamedTemporaryFile(prefix="smk-", suffix=".out", delete=False)
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        env = request.get("env") or {}
        os.environ.update(env)
        os.chdir(request["cwd"])
        code = 0
        try:
            snakemake.cli.main(request["args"])
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    text = open(out.name, errors="replace").read()
    os.unlink(out.name)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "out": text}), flush=True)
"""


class SnakemakeRunner:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self, args: list[str], cwd: str = ".", env: dict[str, str] | None = None) -> tuple[int, str]:
        request = {"args": [str(a) for a in args], "cwd": str(cwd), "env": env}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return reply["rc"], reply["out"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
