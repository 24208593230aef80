"""Every command README.md shows, run as a user would (or, where it cannot run here, listed with the reason).

The ```bash blocks of README.md are read line by line (`\\` continuations joined, trailing `# comments`
dropped). Every line that calls train.py (also inside a `torchrun` or set-up line) must compose: Hydra composes
it with the line's own overrides, sweeps expanded, so an unknown experiment, a misspelt key or a bad group
name fails here. Every `python train.py`, `python sample.py` and `python -m lm_music...` line is then run in a
fresh folder, with the README's placeholders (`PATH/...`, `DIR`, `logs/.../DATE_TIME/...ckpt`, `...`,
`my-model`, `song.mid`) mapped to the real test data and to tiny runs trained once per session, and made
cheap (one epoch of 2 batches, tiny sizes where the line does not set them, one thread, a few short samples).
A line that is neither run nor in NOT_RUN fails `test_every_readme_command_is_covered`: a new README line
cannot drift from the code unnoticed.
"""

import itertools
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.conftest import LYRICS_CSV, ROOT, compose_train, data_path

README = ROOT / "README.md"

# Lines that are not run here, and why (the train.py ones among them are still composed).
NOT_RUN = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e .[dev] "
    "&& python train.py": "installs packages (pip, the network); its `python train.py` is run on its own below",
    "python -m pytest": "the test suite itself",
    "pip install huggingface_hub && huggingface-cli login": "pip and the Hugging Face Hub: not reachable from CI",
    "huggingface-cli upload YOUR_NAME/my-model my-model .": "the Hugging Face Hub: not reachable from CI",
    "python train.py -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu hydra.launcher.nodes=1 "
    "hydra.launcher.tasks_per_node=4 hydra.launcher.gpus_per_node=4 hydra.launcher.timeout_min=600 "
    "trainer=ddp trainer.devices=4 experiment=piano_midi seed=1,2,3": "submits SLURM jobs (4 GPUs each)",
    "torchrun --nnodes=2 --nproc_per_node=4 --node_rank=$RANK --master_addr=HOST0 --master_port=29500 "
    "train.py experiment=piano_midi trainer=ddp trainer.devices=4 trainer.num_nodes=2 "
    "hydra.run.dir=logs/piano_midi/run1": "two machines of 4 GPUs",
    "tensorboard --logdir logs": "a server that runs until stopped; tensorboard's own command",
    "python sample.py pretrained=pop909 audio.renderer=fluidsynth": "needs pyfluidsynth and libfluidsynth, "
    "which pip cannot install (tests/test_audio.py renders with FluidSynth where they are installed)",
    "srun python train.py experiment=piano_midi": "a line of an sbatch script: tests/test_slurm.py runs that "
    "script (a smaller training) against a live SLURM cluster, through a time limit and Lightning's requeue",
    "python -m tests.slurm_cluster": "a cluster that runs until Ctrl-C: tests/test_slurm.py starts the same one",
    "python -m lm_music.mlflow_server": "a server that runs until stopped (tests/test_mlflow.py starts one)",
    "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000": "a shell setting for the lines after it; the test runs "
    "them against the local store (tests/test_mlflow.py against a server)",
}

# The lines run by default (a few seconds each); every other line's run is marked slow (a training run
# starts a process that imports torch and Lightning, ~10 s on 2 shared cores; music21's chorales are built
# once, in minutes; the page imports Gradio): `pytest -m slow -n 0 tests/test_readme.py` runs them.
CHEAP = {
    "python sample.py",
    "python sample.py pretrained=list",
}


@dataclass(frozen=True)
class Command:
    text: str  # the line as one string, tokens joined
    tokens: tuple[str, ...]

    def __str__(self) -> str:
        return self.text


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a # at the start of a word, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def readme_commands(readme: Path = README) -> list[Command]:
    """The commands of README.md's ```bash blocks, one per logical line, in order."""
    commands, block, pending = [], False, ""
    for raw in readme.read_text().splitlines():
        if raw.strip().startswith("```"):
            block = raw.strip() == "```bash"
            continue
        if not block:
            continue
        line = pending + _strip_comment(raw).strip()
        if line.endswith("\\"):
            pending = line[:-1].strip() + " "
            continue
        pending = ""
        tokens = tuple(shlex.split(line))
        if tokens:
            commands.append(Command(" ".join(tokens), tokens))
    return commands


COMMANDS = readme_commands()


def entry_point(command: Command) -> str | None:
    """train.py, sample.py or lm_music.MODULE, when the line is one of the commands this test runs."""
    tokens = command.tokens
    if tokens[:2] in (("python", "train.py"), ("python", "sample.py")):
        return tokens[1]
    if tokens[:2] == ("python", "-m") and tokens[2].startswith("lm_music"):
        return tokens[2]
    return None


def train_overrides(command: Command) -> list[list[str]] | None:
    """The overrides of the line's train.py, as many lists as its sweep makes (at most a few); None without
    a train.py. A `-m` flag is dropped: compose does not launch."""
    tokens = list(command.tokens)
    if "train.py" not in tokens:
        return None
    args = tokens[tokens.index("train.py") + 1 :]
    args = args[: args.index("&&")] if "&&" in args else args
    args = [a for a in args if a not in ("-m", "--multirun")]
    choices = []
    for override in OverridesParser.create().parse_overrides(args):
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(combination) for combination in itertools.product(*choices)]


# --- placeholders: the README's names for the user's files and runs, mapped to the test data and runs


@dataclass(frozen=True)
class Runs:
    music: Path  # a tiny Nottingham run folder (python train.py experiment=nottingham)
    lyrics: Path  # a tiny conditional lyrics run folder
    events: Path  # a tiny event-token run folder (python train.py experiment=pop909_events)
    exported: Path  # the music run exported (python -m lm_music.export)

    def checkpoint(self, run: Path, name: str = "best") -> Path:
        if name == "last.ckpt":
            return run / "checkpoints" / "last.ckpt"
        (best,) = (run / "checkpoints").glob("epoch*.ckpt")
        return best


SONG_MID = data_path("midi/nottingham_jukedeck/train/jigs318.mid")
LOGS_CKPT = re.compile(r"logs/(?P<task>\w+)/runs/DATE_TIME/checkpoints/(?P<name>[\w-]+\.ckpt)")
PLACEHOLDER = re.compile(r"\b(PATH|DIR|DATE_TIME|YOUR_NAME|HOST0)\b|\.\.\.")


def small_midi_folder(root: Path, source: str = "nottingham_jukedeck") -> Path:
    """A MIDI folder of 12 real files of `source` (train/ valid/ test/), links into the test data."""
    folder = root / f"midi_folder_{source}"
    if not folder.exists():
        for split, count in (("train", 8), ("valid", 2), ("test", 2)):
            (folder / split).mkdir(parents=True)
            for file in sorted(data_path(f"midi/{source}/{split}").glob("*.mid"))[:count]:
                (folder / split / file.name).symlink_to(file)
    return folder


def run_of(runs: "Runs", task: str) -> Path:
    """The tiny run a `logs/TASK/runs/DATE_TIME/...` path of the README stands for."""
    if task.startswith("lyrics"):
        return runs.lyrics
    return runs.events if task.endswith("_events") else runs.music


def map_placeholders(command: Command, runs: Callable[[], "Runs"], scratch: Path) -> list[str]:
    """The line's arguments (after the entry point) with every placeholder replaced by a real file; `runs()`
    gives the tiny runs (trained on first use)."""
    point = entry_point(command)
    args = list(command.tokens[command.tokens.index(point) + 1 :])
    lyrics = any(a.startswith("experiment=lyrics") or a.startswith("artist=") for a in args)
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key == "data.path":
            if value == "DIR":
                value = str(small_midi_folder(scratch))
            elif value == "...":
                value = str(LYRICS_CSV if lyrics else data_path("polyphonic/JSB_Chorales.mat"))
            elif value == "PATH/songdata.csv":
                value = str(LYRICS_CSV)
            elif value in ("PATH/pop909", "PATH/piano_midi_de"):  # a few of the folder's files
                value = str(small_midi_folder(scratch, value.removeprefix("PATH/")))
            elif value.startswith("PATH/"):
                value = str(data_path(f"polyphonic/{value.removeprefix('PATH/')}"))
        elif sep and key == "audio.soundfont" and value.startswith("PATH"):  # a real SoundFont: pretty_midi's
            from lm_music.audio import default_soundfont

            value = str(default_soundfont())
        elif sep and key == "ckpt_path":
            found = LOGS_CKPT.fullmatch(value)
            if found:
                value = str(runs().checkpoint(run_of(runs(), found["task"]), found["name"]))
            elif value == "...":
                value = str(runs().checkpoint(runs().lyrics if lyrics else runs().music))
            elif value == "PATH/TO/best.ckpt":
                value = str(runs().checkpoint(runs().music))
            elif value == "my-model":
                value = str(runs().exported)
        elif sep and key in ("reference_dir", "samples_dir") and value == "DIR":
            value = str(small_midi_folder(scratch))
        elif sep and key == "prime_midi" and value == "song.mid":
            value = str(SONG_MID)
        elif sep and key == "hydra.run.dir":
            value = value.replace("DATE_TIME", "2000-01-01_00-00-00")
        arg = f"{key}{sep}{value}" if sep else arg
        if PLACEHOLDER.search(arg):
            raise AssertionError(f"{command}: {arg!r} has a placeholder this test does not know: map it")
        out.append(arg)
    return out


# --- making a line cheap


def keys_set(args: list[str]) -> set[str]:
    return {a.lstrip("+~").partition("=")[0] for a in args if "=" in a}


def with_defaults(args: list[str], extra: dict[str, object]) -> list[str]:
    """`args` and each of `extra` the line does not set itself."""
    have = keys_set(args)
    return [*args, *(f"{k}={v}" for k, v in extra.items() if k not in have)]


def replaced(args: list[str], values: dict[str, object]) -> list[str]:
    """`args` with these keys set to these values, whether or not the line sets them."""
    return [a for a in args if a.partition("=")[0] not in values] + [f"{k}={v}" for k, v in values.items()]


CHEAP_TRAINING = {
    "threads": 1,
    "logger": "csv",
    "trainer.accelerator": "cpu",
    "trainer.enable_progress_bar": "false",
    "trainer.max_epochs": 1,
    "trainer.limit_train_batches": 2,
    "trainer.limit_val_batches": 2,
    "trainer.limit_test_batches": 2,
    "trainer.num_sanity_val_steps": 0,
    "callbacks.sample_logger.num_samples": 2,
    "callbacks.sample_logger.length": 16,
    "hydra.sweeper.n_trials": 1,  # Optuna searches; ignored where there is no such key (below)
    "hydra.launcher.n_jobs": 2,
}
TINY = {
    "rnn": {"hidden_size": 32, "embedding_dim": 16, "artist_embedding_dim": 16, "nade_hidden": 16},
    "transformer": {"d_model": 32, "n_layer": 1, "n_head": 2, "nade_hidden": 16},
}


def cheap_train_args(args: list[str], scratch: Path) -> list[str]:
    """A train.py line made cheap: one epoch of 2 batches, tiny sizes where it sets none, its output in
    `scratch` (unless it names its own run folder)."""
    first = train_overrides(Command("", ("train.py", *args)))[0]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=first, return_hydra_config=True)
    searched = set(cfg.hydra.sweeper.get("params") or {})  # an Optuna search's own keys: left to it
    extra = dict(CHEAP_TRAINING)
    if "hparams_search" not in keys_set(args):
        del extra["hydra.sweeper.n_trials"]
    if "hydra/launcher" not in keys_set(args):
        del extra["hydra.launcher.n_jobs"]
    extra.update(
        {
            f"model.{k}": v
            for k, v in TINY[cfg.model.arch].items()
            if k in cfg.model and f"model.{k}" not in searched
        }
    )
    if cfg.data._target_.endswith("LyricsDataModule"):
        extra.update({"data.max_len": 200, "data.batch_size": 16})
    if cfg.data._target_.endswith("EventDataModule"):
        extra.update({"data.max_len": 128, "data.eval_max_len": 256})
    extra["hydra.sweep.dir"] = scratch / "multirun"
    if "hydra.run.dir" not in keys_set(args):
        extra["hydra.run.dir"] = scratch / "run"
    return with_defaults(args, extra)


def python(script: str, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` (a script of the repository, or `-m MODULE`) in `cwd`, as a user would."""
    command = (
        [sys.executable, "-m", script] if not script.endswith(".py") else [sys.executable, str(ROOT / script)]
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*command, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def check(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert done.returncode == 0, (
        f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done


def workdir(path: Path, data_dir: Path) -> Path:
    """A fresh folder to run a line in, as the repository root would be: data/ with the benchmarks in it
    (logs/, samples/ and my-model/ land here too)."""
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "data").exists():
        (path / "data").symlink_to(data_dir)
    return path


# --- the runs the lines read, trained once per session


@pytest.fixture(scope="session")
def readme_data(tmp_path_factory, chorale_cache) -> Path:
    """data/ of a checkout once the benchmarks are downloaded (links to the test data); the chorale cache
    is the one every test shares."""
    data_dir = tmp_path_factory.mktemp("readme_data")
    for name in ("JSB_Chorales.mat", "Nottingham.mat", "Piano_midi.mat"):
        (data_dir / name).symlink_to(data_path(f"polyphonic/{name}"))
    (data_dir / "songdata.csv").symlink_to(LYRICS_CSV)
    (chorale_cache / "cache").mkdir(exist_ok=True)
    (data_dir / "cache").symlink_to(chorale_cache / "cache")
    return data_dir


@pytest.fixture(scope="session")
def readme_runs(tmp_path_factory, readme_data) -> Runs:
    """The runs the README's `ckpt_path=...` stand for: a tiny Nottingham run, a tiny conditional lyrics run,
    a tiny POP909 event-token run (all by train.py, so they have their .hydra/ folders), and the music run
    exported."""
    root = tmp_path_factory.mktemp("readme_runs")
    cwd = workdir(root / "work", readme_data)
    music, lyrics, events = root / "music_run", root / "lyrics_run", root / "events_run"
    for run, line in (
        (music, ["experiment=nottingham"]),
        (lyrics, ["experiment=lyrics_conditional", f"data.path={LYRICS_CSV}"]),
        (events, ["experiment=pop909_events", f"data.path={small_midi_folder(root, 'pop909')}"]),
    ):
        check(
            python("train.py", cheap_train_args([*line, f"hydra.run.dir={run}"], root), cwd),
            f"train.py {line}",
        )
    exported = root / "my-model"
    runs = Runs(music, lyrics, events, exported)
    check(
        python("lm_music.export", [f"ckpt_path={runs.checkpoint(music)}", f"out_dir={exported}"], cwd),
        "export",
    )
    return runs


# --- the tests


def param(command: Command):
    return pytest.param(command, id=command.text, marks=[] if command.text in CHEAP else [pytest.mark.slow])


COMPOSED = [c for c in COMMANDS if train_overrides(c) is not None]
RUN = [c for c in COMMANDS if entry_point(c) and c.text not in NOT_RUN]


def test_every_readme_command_is_covered():
    assert COMMANDS, f"no ```bash commands found in {README}"
    uncovered = [c.text for c in COMMANDS if c not in RUN and c.text not in NOT_RUN]
    assert not uncovered, (
        f"README commands neither run by tests/test_readme.py nor listed in NOT_RUN: {uncovered}"
    )
    stale = sorted(set(NOT_RUN) - {c.text for c in COMMANDS})
    assert not stale, f"NOT_RUN lists lines README.md no longer has: {stale}"


@pytest.mark.parametrize("command", [pytest.param(c, id=c.text) for c in COMPOSED])
def test_train_line_composes(command, tmp_path):
    for overrides in train_overrides(command):
        compose_train(tmp_path, overrides)


@pytest.mark.parametrize("command", [param(c) for c in RUN])
def test_readme_command_runs(command, readme_data, request, tmp_path):
    cwd = workdir(tmp_path / "work", readme_data)
    point = entry_point(command)
    args = map_placeholders(command, lambda: request.getfixturevalue("readme_runs"), tmp_path)
    if point == "train.py":
        run_train_line(command, args, cwd, tmp_path)
    elif point == "sample.py":
        args = replaced(args, {"num_samples": 2, "length": 16, "threads": 1})
        done = check(python("sample.py", args, cwd), str(command))
        if "pretrained=list" not in args:
            out = cwd / dict(a.split("=", 1) for a in args).get("out_dir", "samples")
            assert any(out.iterdir()), f"{command} wrote nothing to {out}"
        else:
            assert "bach_chorales" in done.stdout
    elif point == "lm_music.export":
        check(python(point, args, cwd), str(command))
        assert (cwd / "my-model" / "model.safetensors").is_file()
    elif point == "lm_music.app":
        serve_once(args, cwd)
    elif point == "lm_music.evaluate":
        args = replaced(args, {"num_samples": 4, "length": 32, "threads": 1})
        check(python(point, args, cwd), str(command))
        out = cwd / dict(a.split("=", 1) for a in args).get("out_dir", "evaluation")
        assert (out / "evaluation.json").is_file() and (out / "evaluation.png").is_file()
    else:
        raise AssertionError(f"{command}: no way to run {point} here: run it, or list it in NOT_RUN")


def run_train_line(command: Command, args: list[str], cwd: Path, scratch: Path) -> None:
    if "ckpt_path=last" in args:  # resume: first the run it continues, in the folder the line names
        first = cheap_train_args([a for a in args if a != "ckpt_path=last"], scratch)
        check(python("train.py", first, cwd), "the run to resume")
        args = replaced(cheap_train_args(args, scratch), {"trainer.max_epochs": 2})
    else:
        args = cheap_train_args(args, scratch)
    done = check(python("train.py", args, cwd), str(command))
    if "-m" in args or "hparams_search" in keys_set(args):
        assert list((scratch / "multirun").rglob("metrics.json")), f"{command}: no job wrote metrics.json"
    else:
        run_dir = dict(a.split("=", 1) for a in args if "=" in a)["hydra.run.dir"]
        assert (cwd / run_dir / "metrics.json").is_file(), done.stderr[-3000:]


def serve_once(args: list[str], cwd: Path) -> None:
    """`python -m lm_music.app ARGS` on a free port: it must answer HTTP on 127.0.0.1; then it is stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = replaced(args, {"port": port})
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    log = cwd / "app.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "lm_music.app", *map(str, args)], cwd=cwd, env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, f"the app exited ({server.returncode}): {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    assert answer.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, f"no answer on port {port}: {log.read_text()[-3000:]}"
                time.sleep(0.25)
    finally:
        server.terminate()
        server.wait(timeout=30)
