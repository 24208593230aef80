"""A single-node SLURM cluster on this machine, for the `slurm` tests and for trying the README's SLURM commands
by hand: `python -m tests.slurm_cluster` starts it and prints the `export SLURM_CONF=...` line to use it,
Ctrl-C stops it.

It installs nothing: it needs Debian's `slurmctld slurmd slurm-client slurmdbd munge mariadb-server` and root.
Everything it writes lives in one temporary folder: the configs, MariaDB's data, the daemons' state, spool,
logs and sockets. `localhost` is both the controller and the node (no /etc/hosts entry needed); no cgroups
(`proctrack/linuxproc`, `task/none`); accounting through slurmdbd on MariaDB, because submitit asks `sacct`
how a job ended (without it a job killed before writing its result leaves submitit waiting forever). Short
timers: `KillWait=5` (a job trapping SIGTERM holds its CPU for 5 s, not 30), `cred_expire=10` and
`sched_interval=2` (a requeued job starts again in seconds, not minutes). SLURM checks time limits and
`--signal` on a ~30 s tick: tests leave 60 s of margin.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DAEMONS = (
    "munged",
    "mariadbd",
    "mariadb-install-db",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sinfo",
    "sbatch",
    "sacct",
)
CPUS = 4  # more than this machine's 2 cores (config_overrides): a DDP job of 2 ranks beside a sweep's jobs


def missing() -> str | None:
    """Why a cluster cannot start here (one line), or None."""
    if os.geteuid() != 0:
        return "the test SLURM cluster needs root (its daemons run as root)"
    absent = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if absent:
        return (
            f"the test SLURM cluster needs {', '.join(absent)}: apt-get install slurmctld slurmd slurm-client "
            "slurmdbd munge mariadb-server (.ci/run does)"
        )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class Cluster:
    """A running cluster: `env` holds SLURM_CONF for the commands (`sbatch`, `sinfo`, `sacct`, submitit)."""

    root: Path
    env: dict

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
        return done

    def state(self, job: str) -> str:
        """A job's state as accounting has it (PENDING, RUNNING, COMPLETED, FAILED, ...), '' before it knows."""
        out = self.run("sacct", "-j", job, "-X", "-n", "-P", "-o", "State", check=False).stdout.split()
        return out[0] if out else ""

    def wait(self, job: str, states: tuple[str, ...], seconds: float = 300) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if (state := self.state(job)) in states:
                return state
            time.sleep(1)
        logs = "\n".join(p.read_text()[-1500:] for p in self.root.glob("log/*.log"))
        raise AssertionError(
            f"job {job} did not reach {states} in {seconds} s (it is {self.state(job)!r})\n{logs}"
        )


def _config(root: Path, ports: dict) -> None:
    munge = f"socket={root}/munge/munge.socket.2"
    (root / "slurm.conf").write_text(
        "\n".join(
            [
                "ClusterName=lmtest",
                "SlurmctldHost=localhost",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"SlurmctldPort={ports['ctld']}",
                f"SlurmdPort={ports['slurmd']}",
                f"StateSaveLocation={root}/state",
                f"SlurmdSpoolDir={root}/spool",
                f"SlurmctldPidFile={root}/run/slurmctld.pid",
                f"SlurmdPidFile={root}/run/slurmd.pid",
                f"SlurmctldLogFile={root}/log/slurmctld.log",
                f"SlurmdLogFile={root}/log/slurmd.log",
                "AuthType=auth/munge",
                f"AuthInfo={munge},cred_expire=10",
                "CredType=cred/munge",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "MpiDefault=none",
                "ReturnToService=2",
                "SchedulerType=sched/backfill",
                "SchedulerParameters=sched_interval=2",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "SlurmdParameters=config_overrides",
                "KillWait=5",
                "MinJobAge=600",
                "JobRequeue=1",
                "AccountingStorageType=accounting_storage/slurmdbd",
                "AccountingStorageHost=localhost",
                f"AccountingStoragePort={ports['dbd']}",
                f"AccountingStoragePass={root}/munge/munge.socket.2",  # the munge socket towards slurmdbd
                "JobAcctGatherType=jobacct_gather/none",
                f"NodeName=localhost CPUs={CPUS} RealMemory=8000 State=UNKNOWN",
                "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    dbd = root / "slurmdbd.conf"
    dbd.write_text(
        "\n".join(
            [
                "AuthType=auth/munge",
                f"AuthInfo={munge}",
                "DbdHost=localhost",
                f"DbdPort={ports['dbd']}",
                "SlurmUser=root",
                f"PidFile={root}/run/slurmdbd.pid",
                f"LogFile={root}/log/slurmdbd.log",
                "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1",
                f"StoragePort={ports['db']}",
                "StorageUser=slurm",
                "StoragePass=slurm",
                "StorageLoc=slurm_acct_db",
                "",
            ]
        )
    )
    dbd.chmod(0o600)  # slurmdbd refuses a config others can read (it holds the database password)


def _wait_until(test, seconds: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if test():
            return
        time.sleep(0.2)
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(root.glob("log/*")) if p.is_file()
    )
    raise RuntimeError(f"the test SLURM cluster: {what} did not happen in {seconds} s\n{logs}")


def _job_processes(conf: Path) -> list[int]:
    """The processes the cluster's jobs left (slurmstepd, batch scripts, srun, the job's python): every
    process whose environment names this cluster's slurm.conf. Stopping slurmd does not end them."""
    wanted = f"SLURM_CONF={conf}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start munged, MariaDB, slurmdbd, slurmctld and slurmd in a temporary folder; yield once the node is
    idle; stop every daemon by its pid, then what its jobs left running, and remove the folder."""
    if reason := missing():
        raise RuntimeError(reason)
    root = Path(tempfile.mkdtemp(prefix="lm_music_slurm_"))
    for folder in ("munge", "db", "state", "spool", "run", "log"):
        (root / folder).mkdir()
    (root / "munge").chmod(0o755)  # munged asks that clients can reach its socket
    ports = {name: _free_port() for name in ("ctld", "slurmd", "dbd", "db")}
    _config(root, ports)
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    daemons: list[subprocess.Popen] = []

    def start(*command: str) -> None:
        log = (root / "log" / f"{Path(command[0]).name}.out").open("w")
        daemons.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))

    try:
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        start(
            _binary("munged"), "--foreground", "--force", f"--key-file={key}",
            f"--socket={root}/munge/munge.socket.2", f"--pid-file={root}/run/munged.pid",
            f"--log-file={root}/log/munged.log", f"--seed-file={root}/munge/munge.seed",
        )  # fmt: skip
        subprocess.run(
            [_binary("mariadb-install-db"), f"--datadir={root}/db", "--user=root", "--auth-root-authentication-method=normal"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        db_socket = root / "run" / "mysqld.sock"
        start(
            _binary("mariadbd"), "--no-defaults", f"--datadir={root}/db", "--user=root", f"--socket={db_socket}",
            f"--pid-file={root}/run/mysqld.pid", "--bind-address=127.0.0.1", f"--port={ports['db']}",
            f"--log-error={root}/log/mariadb.log",
        )  # fmt: skip
        _wait_until(db_socket.exists, 60, "MariaDB listening", root)
        grant = (
            "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        )
        for _ in range(50):  # the socket appears a moment before the server takes logins
            if not subprocess.run(
                ["mariadb", f"--socket={db_socket}", "-uroot", "-e", grant], capture_output=True
            ).returncode:
                break
            time.sleep(0.2)
        start(_binary("slurmdbd"), "-D")  # reads slurmdbd.conf beside $SLURM_CONF
        _wait_until(lambda: (root / "run" / "slurmdbd.pid").exists(), 60, "slurmdbd started", root)
        time.sleep(0.5)
        start(_binary("slurmctld"), "-D", "-i", "-f", str(root / "slurm.conf"))
        start(_binary("slurmd"), "-D", "-N", "localhost", "-f", str(root / "slurm.conf"))

        def idle() -> bool:
            done = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            return done.stdout.strip() == "idle"

        _wait_until(idle, 90, "the node showing idle in sinfo", root)
        yield Cluster(root, env)
    finally:
        for process in reversed(daemons):
            process.send_signal(signal.SIGTERM)
        for process in reversed(daemons):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for pid in _job_processes(root / "slurm.conf"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    with cluster() as running:
        print(f"export SLURM_CONF={running.env['SLURM_CONF']}", flush=True)
        print("the cluster runs until Ctrl-C", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
