"""A real single-node SLURM cluster for a test, started and stopped on this machine.

    with SlurmCluster() as cluster:          # munged, slurmctld, slurmd; node idle
        subprocess.run(["sbatch", ...], env={**os.environ, **cluster.env})
    # every daemon it started is stopped again, by the PID in its pid file

Needs root, Debian's `slurmctld slurmd slurm-client munge` packages and no SLURM
configuration of the machine's own. No accounting database and no cgroups: the plugins
are the ones that work without either (see ../shared/notes/slurm.md). Everything goes
into one temporary folder; the only things put outside it are `/etc/slurm/slurm.conf`
(a symlink to the folder's config: `srun` inside a job drops SLURM_CONF from its
environment and falls back to that path) and `/run/munge` (munged's default socket
folder), each created only when absent and removed again on exit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "clpipe-slurm-"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_RUN = Path("/run/munge")
MUNGE_SOCKET = MUNGE_RUN / "munge.socket.2"
MUNGE_KEY = Path("/etc/munge/munge.key")
BINARIES = (
    "munged",
    "munge",
    "unmunge",
    "slurmctld",
    "slurmd",
    "sbatch",
    "srun",
    "squeue",
    "scontrol",
    "sinfo",
    "scancel",
)
APT_HINT = (
    "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge (Debian/Ubuntu, as root)"
)


class ClusterError(RuntimeError):
    """The cluster did not come up (the message carries the daemons' log tails)."""


class ClusterUnavailable(ClusterError):
    """This machine cannot host a test cluster (not root, no SLURM, a SLURM config of its own)."""


def unavailable_reason() -> str | None:
    """Why no test cluster can start here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to start munged, slurmctld and slurmd"
    missing = [b for b in BINARIES if shutil.which(b, path=_path()) is None]
    if missing:
        return f"SLURM/munge programs not found: {', '.join(missing)} (install them: {APT_HINT})"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return f"no 'munge' user (the munge package creates it: {APT_HINT})"
    if _foreign_system_conf():
        return f"{SYSTEM_CONF} exists: this machine has a SLURM configuration of its own; not touching it"
    return None


def _path() -> str:
    """PATH with the sbin folders (the daemons live there; a non-login PATH may lack them)."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(parts + [p for p in ("/usr/sbin", "/sbin", "/usr/bin") if p not in parts])


def _foreign_system_conf() -> bool:
    """/etc/slurm/slurm.conf exists and is not a dangling link left by a crashed test cluster."""
    if not SYSTEM_CONF.is_symlink():
        return SYSTEM_CONF.exists()
    return not _is_stale_link(SYSTEM_CONF)


def _is_stale_link(link: Path) -> bool:
    target = Path(os.readlink(link))
    return target.parent.name.startswith(PREFIX) and not target.exists()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as err:
        return f"    ({path}: {err})"
    return "\n".join("    " + line for line in text[-lines:]) or f"    ({path} is empty)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@dataclass
class _Daemon:
    name: str
    proc: subprocess.Popen
    pid_file: Path
    logs: tuple[Path, ...]

    def log_tails(self) -> str:
        return "\n".join(f"  {log}:\n{_tail(log)}" for log in self.logs)


class SlurmCluster:
    """munged + slurmctld + slurmd on this host, one node, its partitions (and fake GPUs);
    a context manager.

    ``env`` holds SLURM_CONF for SLURM's client commands; ``node`` is the node's name.
    On exit every job is cancelled and every daemon it started is stopped (SIGTERM, then
    SIGKILL after ``stop_timeout`` s) by the PID in its pid file, never by name; the
    temporary folder is removed unless ``keep`` is set.
    """

    def __init__(
        self,
        partitions: tuple[str, ...] = ("test",),
        gpus: int = 0,
        start_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        min_job_age: int = 300,
        keep: bool = False,
    ):
        # every partition holds the one node; the first is the default
        self.partitions = partitions
        # fake GPUs (GRES gpu backed by /dev/null clones): SLURM schedules them and sets
        # CUDA_VISIBLE_DEVICES in a job that asked for one; nothing computes on them
        self.gpus = gpus
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        # squeue (the profile's status command) only sees a job MinJobAge s after it ends;
        # the Snakemake plugin wants >= 120 s, or it falls back to sacct (no accounting).
        self.min_job_age = min_job_age
        self.keep = keep
        self.dir: Path | None = None
        self.conf: Path | None = None
        self.node = ""
        self.cpus = 0
        self._daemons: list[_Daemon] = []
        self._created: list[Path] = []  # outside self.dir, removed on exit (last first)
        self.env: dict[str, str] = {}

    # --- context manager ----------------------------------------------------------

    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop(raise_errors=exc[0] is None)

    # --- start --------------------------------------------------------------------

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise ClusterUnavailable(reason)
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX))
        self.dir.chmod(0o755)  # munged (user munge) writes below it
        self.env = {"SLURM_CONF": str(self.dir / "slurm.conf"), "PATH": _path()}
        self._start_munged()
        self.conf = self._write_conf()
        self._link_system_conf()
        self._start(
            "slurmctld",
            ["slurmctld", "-D", "-f", str(self.conf)],
            self.dir / "slurmctld.pid",
            self.dir / "slurmctld.log",
        )
        self._wait("slurmctld to answer", self._controller_up)
        self._start(
            "slurmd", ["slurmd", "-D", "-f", str(self.conf)], self.dir / "slurmd.pid", self.dir / "slurmd.log"
        )
        self._wait(f"node {self.node} to become idle", self._node_idle)

    def _start(self, name: str, cmd: list[str], pid_file: Path, log: Path, **popen) -> None:
        out = self.dir / f"{name}.out"
        with open(out, "wb") as fh:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # a ^C to the test reaches the test, not the daemons
                **popen,
            )
        self._daemons.append(_Daemon(name, proc, pid_file, (log, out)))

    def _start_munged(self) -> None:
        if self._munge_answers():
            # A munged is already serving the default socket (the machine's own): use it,
            # and leave it running on exit; it is not ours to stop.
            print(f"slurm_cluster: using the munged already on {MUNGE_SOCKET}", file=sys.stderr)
            return
        munge = pwd.getpwnam("munge")
        own = self.dir / "munge"
        own.mkdir(mode=0o700)
        os.chown(own, munge.pw_uid, munge.pw_gid)
        if not MUNGE_RUN.exists():
            MUNGE_RUN.mkdir(mode=0o755)
            self._created.append(MUNGE_RUN)
        os.chown(MUNGE_RUN, munge.pw_uid, munge.pw_gid)
        key = MUNGE_KEY
        if not key.is_file():  # the package makes one; else a throwaway key of our own
            key = own / "munge.key"
            self._run(["mungekey", "--create", f"--keyfile={key}"], user="munge", group="munge")
        self._start(
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={MUNGE_SOCKET}",
                f"--key-file={key}",
                f"--pid-file={own / 'munged.pid'}",
                f"--log-file={own / 'munged.log'}",
                f"--seed-file={own / 'munged.seed'}",
            ],
            own / "munged.pid",
            own / "munged.log",
            user="munge",
            group="munge",
        )
        self._wait("munged to answer", self._munge_answers)

    def _write_conf(self) -> Path:
        d = self.dir
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        # `slurmd -C`: this host's node line (NodeName=<short hostname> CPUs=... RealMemory=...)
        node_line = self._run(["slurmd", "-C"]).stdout.splitlines()[0].split()
        fields = dict(f.split("=", 1) for f in node_line)
        self.node = fields["NodeName"]
        self.cpus = int(fields["CPUs"])
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        fields["RealMemory"] = str(int(mem_kb / 1024 * 0.8))  # leave room for the OS and the daemons
        hardware = " ".join(f"{k}={v}" for k, v in fields.items() if k != "NodeName")
        lines = [
            "# Written by tests/helpers/slurm_cluster.py: a throwaway single-node cluster.",
            "ClusterName=clpipetest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # no cgroups, no accounting database
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "MpiDefault=none",
            "ReturnToService=2",
            f"MinJobAge={self.min_job_age}",
            "KillWait=5",
            "MailProg=/bin/true",
            f"NodeName={self.node} NodeAddr=127.0.0.1 {hardware}"
            + (f" Gres=gpu:{self.gpus}" if self.gpus else "")
            + " State=UNKNOWN",
        ]
        lines += [
            f"PartitionName={name} Nodes=ALL Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE State=UP"
            for i, name in enumerate(self.partitions)
        ]
        if self.gpus:
            lines.insert(1, "GresTypes=gpu")
            gres = []
            for i in range(self.gpus):
                device = d / f"fakegpu{i}"
                os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
                gres.append(f"NodeName={self.node} Name=gpu File={device}")
            (d / "gres.conf").write_text("\n".join(gres) + "\n")
        conf = d / "slurm.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _link_system_conf(self) -> None:
        """/etc/slurm/slurm.conf -> our config, only where there is none (see the module doc)."""
        if SYSTEM_CONF.is_symlink() and _is_stale_link(SYSTEM_CONF):
            SYSTEM_CONF.unlink()  # left by a test cluster that was killed
        elif SYSTEM_CONF.exists():
            raise ClusterUnavailable(
                f"{SYSTEM_CONF} exists: this machine has a SLURM configuration of its own"
            )
        if not SYSTEM_CONF.parent.exists():
            SYSTEM_CONF.parent.mkdir(parents=True)
            self._created.append(SYSTEM_CONF.parent)
        SYSTEM_CONF.symlink_to(self.conf)
        self._created.append(SYSTEM_CONF)

    # --- health checks ------------------------------------------------------------

    def _run(self, cmd: list[str], timeout: float = 20, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env}, **kw
        )

    def _munge_answers(self) -> bool:
        try:
            cred = subprocess.run(
                ["munge", "-n", f"--socket={MUNGE_SOCKET}"],
                capture_output=True,
                timeout=10,
                env=self._env_or_os(),
            )
            if cred.returncode != 0:
                return False
            dec = subprocess.run(
                ["unmunge", f"--socket={MUNGE_SOCKET}"],
                input=cred.stdout,
                capture_output=True,
                timeout=10,
                env=self._env_or_os(),
            )
            return dec.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _env_or_os(self) -> dict[str, str]:
        return {**os.environ, "PATH": _path(), **self.env}

    def _controller_up(self) -> bool:
        try:
            return "is UP" in self._run(["scontrol", "ping"], timeout=10).stdout
        except subprocess.TimeoutExpired:
            return False

    def _node_idle(self) -> bool:
        try:
            # one line per partition the node is in
            states = set(
                self._run(["sinfo", "-h", "-N", "-n", self.node, "-o", "%T"], timeout=10).stdout.split()
            )
        except subprocess.TimeoutExpired:
            return False
        state = " ".join(sorted(states))
        if state == "idle":
            return True
        if any(s in state for s in ("drain", "inval", "down", "fail")) and not state.endswith("*"):
            self._run(["scontrol", "update", f"nodename={self.node}", "state=resume"], timeout=10)
        return False

    def _wait(self, what: str, ready) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            for d in self._daemons:
                if d.proc.poll() is not None:
                    raise ClusterError(
                        f"{d.name} exited with status {d.proc.returncode} while waiting for {what}; "
                        f"its log:\n{d.log_tails()}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {self.start_timeout:.0f} s waiting for {what}.\n{self.describe()}"
                )
            time.sleep(0.5)

    def describe(self) -> str:
        """Node state and every daemon's log tail (for error messages)."""
        parts = []
        if self.node:
            try:
                parts.append(self._run(["scontrol", "show", "node", self.node], timeout=10).stdout.strip())
            except (OSError, subprocess.TimeoutExpired) as err:
                parts.append(f"scontrol show node: {err}")
        parts += [f"{d.name} (pid {d.proc.pid}):\n{d.log_tails()}" for d in self._daemons]
        return "\n".join(parts)

    # --- stop ---------------------------------------------------------------------

    def stop(self, raise_errors: bool = False) -> None:
        problems: list[str] = []
        if any(d.name == "slurmctld" and d.proc.poll() is None for d in self._daemons):
            problems += self._cancel_jobs()
        for d in reversed(self._daemons):
            try:
                problem = self._stop_daemon(d)
            except Exception as err:  # keep going: every daemon must be stopped
                problem = f"{d.name}: {err!r}"
            if problem:
                problems.append(problem)
        self._daemons = [d for d in self._daemons if d.proc.poll() is None]
        for path in reversed(self._created):
            try:
                if path.is_symlink() or path.is_file():
                    path.unlink()
                elif path.is_dir():
                    shutil.rmtree(path)
            except OSError as err:
                problems.append(f"could not remove {path}: {err}")
        self._created = []
        if self.dir is not None and not self.keep and not self._daemons:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            msg = "slurm_cluster: stopping the test cluster: " + "; ".join(problems)
            print(msg, file=sys.stderr)
            if raise_errors:
                raise ClusterError(msg)

    def _cancel_jobs(self) -> list[str]:
        """Cancel every job (all of them are this test's), so no slurmstepd outlives slurmd."""
        try:
            ids = self._run(["squeue", "-h", "-o", "%i"], timeout=10).stdout.split()
            if not ids:
                return []
            self._run(["scancel", *ids], timeout=10)
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline:
                if not self._run(["squeue", "-h", "-o", "%i"], timeout=10).stdout.split():
                    return []
                time.sleep(0.5)
            return [f"jobs still listed after scancel: {' '.join(ids)}"]
        except (OSError, subprocess.TimeoutExpired) as err:
            return [f"cancelling jobs: {err!r}"]

    def _stop_daemon(self, d: _Daemon) -> str | None:
        if d.proc.poll() is not None:
            return None
        try:
            pid = int(d.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        problem = None
        if pid != d.proc.pid:
            # Run in the foreground, each daemon's pid file holds the pid we started.
            problem = (
                f"{d.name}: pid file {d.pid_file} says {pid}, started as {d.proc.pid}; stopped {d.proc.pid}"
            )
            pid = d.proc.pid
        os.kill(pid, signal.SIGTERM)
        try:
            d.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            d.proc.wait(10)
            problem = f"{d.name} (pid {pid}) ignored SIGTERM for {self.stop_timeout:.0f} s; killed"
        return problem
