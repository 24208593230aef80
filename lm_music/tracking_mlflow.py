"""MLflow as a tracker (`logger=mlflow`): Lightning's MLFlowLogger, wrapped where a lab's use of it needs more.

- Where: $MLFLOW_TRACKING_URI (a server: `python -m lm_music.mlflow_server`), else a local file store,
  `logs/mlruns`, which `MLFLOW_ALLOW_FILE_STORE=true mlflow ui` run in `logs/` opens without flags (MLflow 3
  reads an existing ./mlruns; the variable lifts its refusal of the file store, now in maintenance mode).
- A server that is down or a wrong URI: one line (a UserError) before the run starts, not minutes of retries.
- One experiment per task_name; parallel sweep jobs that both find it missing do not fail creating it twice.
- The run is tagged with its run folder, the commit, the experiment file, the overrides, and in a sweep the
  sweep folder and job number; it holds the run folder's .hydra/ files, the samples logged in training and
  metrics.json as artifacts (with `log_model: true`, Lightning's: the best checkpoint).
- Resume (`ckpt_path=last`, a SLURM requeue) goes on in the same MLflow run, whose id the run folder keeps in
  mlflow_run.json, without re-logging a parameter with a new value (which MLflow refuses).
"""

import fcntl
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
from pytorch_lightning import loggers as pl_loggers
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

from lm_music.errors import UserError
from lm_music.io import write_text_atomic
from lm_music.provenance import source_commit

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"  # in the run folder: the MLflow run it logs to, for a resume
START_SERVER = "python -m lm_music.mlflow_server"


def check_server(uri: str, timeout: float = 5.0) -> None:
    """A server URI must answer MLflow's /health now: else one line saying what to do, instead of the client's
    retries (minutes) at the first call."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise UserError(
                f"logger=mlflow: {uri} answers, but is not an MLflow server (GET /health: 404)"
            ) from None
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(
            f"logger=mlflow: no MLflow server answers at {uri} ({reason}); start one with `{START_SERVER}` "
            "(http://127.0.0.1:5000), set MLFLOW_TRACKING_URI to a running one or unset it (a local store in "
            "logs/mlruns), or pick another logger (logger=tensorboard)"
        ) from None


@contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """Across processes, for a local file store: two jobs of a joblib sweep that both find the experiment
    missing would each create one of that name (the file store checks, then writes). A server's SQL store
    refuses the second, which `_experiment_id_of` catches."""
    if not tracking_uri.startswith("file:"):
        yield
        return
    root = Path(tracking_uri.removeprefix("file:"))
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lm_music.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _hydra_tags(run_dir: Path) -> dict[str, str]:
    tags = {"lm_music.run_dir": str(run_dir)}
    if not HydraConfig.initialized():  # the config composed in-process (tests), not by train.py
        return tags
    hydra = HydraConfig.get()
    if experiment := hydra.runtime.choices.get("experiment"):
        tags["lm_music.experiment"] = f"conf/experiment/{experiment}.yaml"
    tags["lm_music.overrides"] = " ".join(hydra.overrides.task)
    if hydra.mode == RunMode.MULTIRUN:
        tags["lm_music.sweep_dir"] = str(Path(hydra.sweep.dir).resolve())
        tags["lm_music.job"] = str(hydra.job.num)
    return tags


def _run_name(run_dir: Path) -> str:
    """A sweep job: the sweep folder's name (its date and time) and the job's number; a single run: its
    folder's name. Both are short in the UI's run list; the overrides are a tag."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hydra = HydraConfig.get()
        return f"{Path(hydra.sweep.dir).name} job {hydra.job.num}"
    return run_dir.name


class MLFlowLogger(pl_loggers.MLFlowLogger):
    """Lightning's MLFlowLogger with the experiment, tags, artifacts, resume and server check above. `run_dir`:
    the run folder (conf/logger/mlflow.yaml gives it); `save_dir`: the local store when no URI is set."""

    def __init__(
        self,
        experiment_name: str,
        run_dir: str,
        tracking_uri: str | None = None,
        save_dir: str = "logs/mlruns",
        tags: dict[str, Any] | None = None,
        log_model: bool | str = False,
        **kwargs: Any,
    ) -> None:
        # The client's default is 7 retries with a growing backoff: a server gone mid-run would stall every
        # logging call for minutes. The user's own setting wins.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        tracking_uri = tracking_uri or f"file:{Path(save_dir).resolve()}"
        if tracking_uri.startswith("file:"):
            # MLflow 3 keeps its file store "in maintenance mode" behind this switch; the SQLite store it
            # prefers needs SQLAlchemy 2, which the sweeps extra's pin keeps out of the project's environment.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        check_server(tracking_uri)
        self.run_dir = Path(run_dir).resolve()
        commit = {"lm_music.commit": c} if (c := source_commit()) else {}
        super().__init__(
            experiment_name=experiment_name,
            run_name=_run_name(self.run_dir),
            tracking_uri=tracking_uri,
            tags={**_hydra_tags(self.run_dir), **commit, **(tags or {})},
            log_model=log_model,
            **kwargs,
        )
        self._resumed = False
        self._failed = False

    def resume(self, state: dict) -> None:
        """Called before anything is logged when the run resumes from a checkpoint (lm_music.loggers'
        resume_trackers): go on in the MLflow run that this run folder started."""
        if self._initialized:
            raise RuntimeError("resume() goes before anything is logged")
        file = self.run_dir / RUN_FILE
        saved = json.loads(file.read_text()) if file.is_file() else {}
        if saved.get("tracking_uri") != self._tracking_uri:
            if saved:
                log.warning("%s is of %s: this run logs to a new run in %s", file, saved, self._tracking_uri)
            return
        self._run_id, self._resumed = saved["run_id"], True

    @property
    @rank_zero_experiment
    def experiment(self) -> "MlflowClient":
        if self._initialized:
            return self._mlflow_client
        if self._run_id is None:
            self._experiment_id = self._experiment_id_of(self._experiment_name)
        client = super().experiment  # Lightning's: creates the run (or finds the resumed one)
        self._started(client)
        return client

    def _experiment_id_of(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self._mlflow_client
        with _store_lock(self._tracking_uri):
            found = client.get_experiment_by_name(name)
            if found is None:
                try:
                    return client.create_experiment(name, artifact_location=self._artifact_location)
                except MlflowException as err:  # a parallel job made it between the look-up and here
                    if err.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    found = client.get_experiment_by_name(name)
        if found.lifecycle_stage == "deleted":
            raise UserError(
                f"the MLflow experiment {name!r} is deleted: restore it in the MLflow UI, or pick another "
                "task_name="
            )
        return found.experiment_id

    def _started(self, client: "MlflowClient") -> None:
        """The run exists: the run folder records it, a resumed one is running again, and its config files
        are artifacts from the start (a crashed run has them too)."""
        record = {"tracking_uri": self._tracking_uri, "experiment_id": self._experiment_id}
        write_text_atomic(self.run_dir / RUN_FILE, json.dumps({**record, "run_id": self._run_id}) + "\n")
        if self._resumed:
            client.update_run(self._run_id, status="RUNNING")
            if HydraConfig.initialized():
                client.set_tag(
                    self._run_id, "lm_music.resumed_with", " ".join(HydraConfig.get().overrides.task)
                )
        if (self.run_dir / ".hydra").is_dir():
            client.log_artifacts(self._run_id, str(self.run_dir / ".hydra"), "hydra")

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any]) -> None:
        params = _flatten_dict(_convert_params(params))  # what Lightning's method logs, keyed as it keys it
        if self._resumed:
            # MLflow keeps a parameter's first value ("Changing param values is not allowed"): a resumed run
            # keeps those of its start (its new overrides are the tag lm_music.resumed_with).
            logged = self.experiment.get_run(self.run_id).data.params
            params = {key: value for key, value in params.items() if key not in logged}
        super().log_hyperparams(params)

    def log_samples(self, items: list[dict], step: int) -> None:
        """Samples as files under samples/step_NNNNNN/: text as .txt, images as .png, audio as .wav, and the
        .mid an audio item was rendered from (`midi`, a PrettyMIDI); one upload for them all."""
        import soundfile
        from PIL import Image

        with tempfile.TemporaryDirectory() as folder:
            for item in items:
                name = item["tag"].removeprefix("samples/").replace("/", "_")
                file = f"{folder}/{name}"
                if item["kind"] == "text":
                    Path(f"{file}.txt").write_text(item["value"], encoding="utf-8")
                elif item["kind"] == "image":
                    Image.fromarray(np.asarray(item["value"], dtype=np.uint8)).save(f"{file}.png")
                elif item["kind"] == "audio":
                    soundfile.write(
                        f"{file}.wav", np.asarray(item["value"], dtype=np.float32), item["sample_rate"]
                    )
                    if item.get("midi") is not None:
                        item["midi"].write(f"{folder}/{name.replace('audio', 'midi')}.mid")
            self.experiment.log_artifacts(self.run_id, folder, f"samples/step_{step:06d}")

    def log_results(self) -> None:
        """The run folder's metrics.json (written when the run ends well) as an artifact."""
        metrics = self.run_dir / "metrics.json"
        if metrics.is_file():
            self.experiment.log_artifact(self.run_id, str(metrics))

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        # Lightning finalizes at the end of each of fit, validate and test, with "failed" after an exception
        # or a SIGTERM; train() then closes every tracker with "success": a failed run stays FAILED.
        self._failed = self._failed or status == "failed"
        super().finalize("failed" if self._failed else status)
