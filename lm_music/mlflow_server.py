"""An MLflow tracking server on 127.0.0.1, from a virtual environment of its own.

Why its own: the server's SQL store needs SQLAlchemy 2 (with SQLAlchemy 1.4 `mlflow server` dies at start:
`module 'sqlalchemy' has no attribute 'Engine'`), while the project's `[sweeps]` extra pins SQLAlchemy < 2 for
the Optuna sweeper's optuna 2.x study storage. So the project installs the light client (`mlflow-skinny`, no
SQLAlchemy, the `[tracking]` extra), and the server lives in ~/.cache/lm_music/mlflow-server-venv (or
$LM_MUSIC_MLFLOW_SERVER_VENV), made on first use with pip and reused after.

    python -m lm_music.mlflow_server [--port 5000] [--store logs/mlflow] [MORE `mlflow server` OPTIONS]

serves the store's SQLite file and artifacts folder; then `export MLFLOW_TRACKING_URI=http://127.0.0.1:5000`
and `python train.py logger=mlflow`. No torch, no Lightning: it starts at once.
"""

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

SERVER_REQUIREMENT = "mlflow>=3,<4"
SERVER_VENV = Path(
    os.environ.get("LM_MUSIC_MLFLOW_SERVER_VENV", "~/.cache/lm_music/mlflow-server-venv")
).expanduser()


def server_venv(path: Path = SERVER_VENV) -> Path:
    """The `mlflow` executable of the server's environment, made first if missing (a few minutes, once).
    A marker written last tells a finished environment from one an interrupted install left; a lock keeps
    two processes (test workers, a user and a test) from making it at once."""
    mlflow, ready = path / "bin" / "mlflow", path / ".lm_music-ready"
    if mlflow.is_file() and ready.is_file() and ready.read_text() == SERVER_REQUIREMENT:
        return mlflow
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if mlflow.is_file() and ready.is_file() and ready.read_text() == SERVER_REQUIREMENT:
            return mlflow
        shutil.rmtree(path, ignore_errors=True)
        print(f"making the MLflow server's environment in {path} ({SERVER_REQUIREMENT})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, SERVER_REQUIREMENT], check=True)
        ready.write_text(SERVER_REQUIREMENT)
    return mlflow


def server_command(mlflow: Path, store: Path, port: int = 5000, host: str = "127.0.0.1") -> list[str]:
    """`mlflow server` over `store`/mlflow.db (SQLite) and `store`/artifacts (served to the clients, so a
    run's samples and checkpoints upload through the server). One worker: SQLite takes one writer at a time,
    and one process serialises the writes of parallel sweep jobs instead of failing them on a locked file."""
    store = store.resolve()
    store.mkdir(parents=True, exist_ok=True)
    return [
        str(mlflow),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "artifacts"),
        "--workers",
        "1",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--store", type=Path, default=Path("logs/mlflow"), help="SQLite file and artifacts")
    args, more = parser.parse_known_args(argv)
    command = server_command(server_venv(), args.store, args.port) + more
    print(
        f"MLflow server at http://127.0.0.1:{args.port} (store {args.store.resolve()}): "
        f"export MLFLOW_TRACKING_URI=http://127.0.0.1:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
