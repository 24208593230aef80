"""`python -m lm_music.export ckpt_path=RUN/checkpoints/best.ckpt out_dir=DIR [dtype=float16] [score=true]`
`python -m lm_music.export card=FOLDER [data.path=...] [decoding.temperature=T ...] [score=true]` (judge an
exported folder's samples anew, at its decoding defaults, set here if given; with score=true re-score its test
split too; rewrite its card)

writes a model as a folder in the Hugging Face Hub layout (`model.safetensors`, `config.json`, a `README.md`
model card) that `sample.py` and `train.py` read as they read a `.ckpt` (`lm_music.checkpoints`). The shipped
models are such folders inside the package. Safetensors holds tensors only and `config.json` plain values,
so reading a folder runs no code from it.
"""

import json
import math
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lm_music.cache import OPTIONS as CACHE_OPTIONS
from lm_music.cache import ContinuousCache, Refrain
from lm_music.cards import DATASETS, UNKNOWN_DATASET, dataset_of, model_card, run_facts, summary
from lm_music.checkpoints import (
    CARD,
    CONFIG,
    FORMAT,
    PRETRAINED_DIR,
    WEIGHTS,
    load_checkpoint,
    network_settings,
    sampler_from_checkpoint,
)
from lm_music.errors import UserError
from lm_music.evaluation.sets import run_data_settings
from lm_music.io import atomic_path, write_text_atomic
from lm_music.tasks.registry import TASKS

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# The card's sample judgement: python -m lm_music.evaluate with these, at the model's decoding defaults.
CARD_SAMPLES = {"num_samples": 64, "seed": 0}
# The card's infilling judgement (models trained to infill): gaps of this many bars, fills of up to this many tokens.
CARD_INFILL = {"infill": 4, "length": 512}
# Data settings that say where the data is on this machine, or how to load it fast: not the model's facts.
MACHINE_DATA_KEYS = {"_target_", "path", "cache_dir", "num_workers"}


def export(
    ckpt_path: str | Path,
    out_dir: str | Path,
    dtype: str = "float32",
    score: bool = False,
    name: str | None = None,
) -> list[Path]:
    """Write `ckpt_path`'s network as an exported folder; with `score`, re-score the written weights on the
    test split of the run's data (its .hydra/config.yaml) and judge their samples against it
    (`lm_music.evaluate`), and put those figures in the card."""
    from safetensors.torch import save  # only exporting needs it

    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    checkpoint = load_checkpoint(ckpt_path)
    if "exported" in checkpoint:
        raise UserError(f"{ckpt_path} is already an exported model: copy the folder instead")
    sampler = sampler_from_checkpoint(checkpoint)
    # clone: safetensors refuses tensors that share memory, as a Transformer's tied output and embedding do
    weights = {
        k: v.detach().to(DTYPES[dtype]).clone().contiguous() for k, v in sampler.net.state_dict().items()
    }
    facts = run_facts(ckpt_path)
    dataset = dataset_of(facts)
    config = {
        "format": FORMAT,
        "task": checkpoint["lm_music_task"],
        "hyper_parameters": network_settings(checkpoint),
        "dtype": dtype,
        "parameters": sum(p.numel() for p in sampler.net.parameters()),
        "dataset": dataset["name"] if facts.get("config") else None,
        "commit": (facts.get("metrics") or {}).get("commit"),
        "training_command": facts.get("command"),
    }
    data = run_data_settings({"path": str(ckpt_path)})
    if data:  # the split and filters, so that evaluating the folder takes its data.path alone
        config["data"] = {k: v for k, v in data.items() if k not in MACHINE_DATA_KEYS}
    run_metrics = {k: v for k, v in (facts.get("metrics") or {}).items() if k.startswith("test/")}
    if run_metrics:
        config["metrics"] = {**run_metrics, "measured_on": "the float32 checkpoint, by its training run"}
    name = name or out_dir.name
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS) as tmp:
        tmp.write_bytes(save(weights, metadata={"format": "pt"}))
    if score:
        config["metrics"] = {**_score(out_dir, config, facts), "measured_on": f"these {dtype} weights"}
        config["samples"] = _judge_samples(out_dir, data)
    config["summary"] = summary(
        config["task"],
        config["hyper_parameters"],
        config["parameters"],
        config["dataset"],
        config.get("metrics") or {},
    )
    write_text_atomic(out_dir / CONFIG, json.dumps(config, indent=2) + "\n")
    shipped = out_dir.resolve().parent == PRETRAINED_DIR.resolve()
    write_text_atomic(out_dir / CARD, model_card(config, facts, dataset, name, shipped))
    return [out_dir / WEIGHTS, out_dir / CONFIG, out_dir / CARD]


def _score(folder: Path, config: dict, facts: dict) -> dict:
    """Test metrics of the exported weights: `train.py train=false` on the run's own config."""
    if "config" not in facts or "overrides" not in facts:
        raise UserError(
            "score=true needs the run's .hydra/config.yaml and overrides.yaml beside checkpoints/ to find its data"
        )
    write_text_atomic(folder / CONFIG, json.dumps({**config, "summary": ""}, indent=2) + "\n")
    return _test_metrics(folder, facts["overrides"], config.get("decoding") or {})


def _test_metrics(folder: Path, overrides: list[str], decoding: dict) -> dict:
    """`train.py train=false` on the exported folder with the training run's overrides: its test metrics, and
    under the continuous cache and/or refrain of its decoding defaults too where it has them (`test/NAME_cache`)."""
    scoring = folder.parent / f".{folder.name}.scoring"
    command = [
        sys.executable,
        str(Path(__file__).parent.parent / "train.py"),
        # a fine-tuned run's init_from is where its training began: the weights to score are ckpt_path's
        *(o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "init_from"),
        *(f"{k}={v if v is not None else 'null'}" for k, v in decoding.items() if k in CACHE_OPTIONS),
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


def _rescored(folder: Path, config: dict, data: dict) -> dict | None:
    """The test metrics of an exported folder scored again from its training command, at the given data path
    (a card's metrics gain the cache's figures when its decoding defaults gain a cache or refrain); None when the folder
    has no training command or no data path is given."""
    words = shlex.split(config.get("training_command") or "")
    if words[:2] != ["python", "train.py"] or not data.get("path"):  # as cards.card_command writes it
        return None
    overrides = [w for w in words[2:] if not w.startswith("data.path=")] + [f"data.path={data['path']}"]
    dtype = config.get("dtype", "float32")
    return {
        **_test_metrics(folder, overrides, config.get("decoding") or {}),
        "measured_on": f"these {dtype} weights",
    }


def rejudge(folder: str | Path, data: dict, decoding: dict | None = None, score: bool = False) -> list[Path]:
    """Judge an exported folder's samples anew and write its card again (a folder exported before cards had
    a "Samples" section, or after the evaluator changed); `data`: where its data is (`path`, `source`);
    `decoding`: new decoding defaults (temperature, top_p, the cache's and refrain's, min_length) that sample.py
    and the card then use; new cache or refrain settings, or `score`, re-score the test split too (from the
    training command, at `data`'s path)."""
    folder = Path(folder)
    checkpoint = load_checkpoint(folder)
    if "exported" not in checkpoint:
        raise UserError(f"{folder} is a .ckpt: export it with score=true, which judges its samples too")
    config = dict(checkpoint["exported"])
    if decoding:
        check_decoding(decoding)
        config["decoding"] = {**config.get("decoding", {}), **decoding}
    settings = {**(config.get("data") or {}), **data}
    if kept := {k: v for k, v in settings.items() if k not in MACHINE_DATA_KEYS}:
        config["data"] = kept
    write_text_atomic(folder / CONFIG, json.dumps(config, indent=2) + "\n")  # the evaluator reads its data
    if score and not config.get("training_command"):
        raise UserError(f"score=true re-scores from the training command, and {folder} records none")
    rescore = score or any(k in CACHE_OPTIONS for k in decoding or {})
    if rescore and (metrics := _rescored(folder, config, data)):
        config["metrics"] = metrics
        config["summary"] = summary(
            config["task"], config["hyper_parameters"], config["parameters"], config["dataset"], metrics
        )
    config["samples"] = _judge_samples(folder, settings)
    write_text_atomic(folder / CONFIG, json.dumps(config, indent=2) + "\n")
    dataset = next((d for d in DATASETS.values() if d["name"] == config.get("dataset")), None)
    dataset = dataset or {**UNKNOWN_DATASET, "name": config.get("dataset") or "your data", "source": "-"}
    facts = {"command": config["training_command"]} if config.get("training_command") else {}
    shipped = folder.resolve().parent == PRETRAINED_DIR.resolve()
    write_text_atomic(folder / CARD, model_card(config, facts, dataset, folder.name, shipped))
    return [folder / CONFIG, folder / CARD]


def check_decoding(decoding: dict) -> None:
    known = ("temperature", "top_p", *CACHE_OPTIONS, "rhyme_candidates", "min_length")
    unknown = set(decoding) - set(known)
    if unknown:
        raise UserError(f"decoding takes {', '.join(known)}, not {', '.join(sorted(unknown))}")
    sampled = {k: v for k, v in decoding.items() if k in ("temperature", "top_p")}
    if not all(isinstance(v, int | float) and v > 0 for v in sampled.values()) or sampled.get("top_p", 1) > 1:
        raise UserError(
            f"decoding defaults must be numbers, temperature > 0 and 0 < top_p <= 1: got {decoding}"
        )
    ContinuousCache.from_options(decoding)
    Refrain.from_options(decoding)
    candidates = decoding.get("rhyme_candidates", 1)
    if not isinstance(candidates, int) or candidates < 1:
        raise UserError(f"decoding.rhyme_candidates must be a whole number >= 1 (1: off), got {candidates}")
    min_length = decoding.get("min_length", 0)
    if not isinstance(min_length, int) or min_length < 0:
        raise UserError(f"decoding.min_length must be a whole number >= 0 (0: off), got {min_length}")


def _judge_samples(folder: Path, data: dict) -> dict:
    """`python -m lm_music.evaluate` on the exported weights against the test split: the card's "Samples"."""
    from lm_music.evaluate import evaluate, options
    from lm_music.evaluation.report import clean
    from lm_music.generation import load_model

    config = json.loads((folder / CONFIG).read_text())
    task = TASKS[config["task"]]
    settings = {**CARD_SAMPLES, "length": task.card_length, "temperature": 1.0, **config.get("decoding", {})}
    args = [f"ckpt_path={folder.resolve()}", *(f"{k}={v}" for k, v in settings.items()), "audio=false"]
    args += [f"data.path={data['path']}"] if data.get("path") else []
    with tempfile.TemporaryDirectory() as out:
        result = evaluate(options([*args, f"out_dir={out}"]))
    samples = result["features"]["samples"]
    comparisons = result["comparisons"]
    features = {
        name: {
            "samples": c["mean_samples"],
            "samples_max": max((v for v in samples[name] if math.isfinite(v)), default=math.nan),
            "reference": c["mean_reference"],
            "oa": c["oa"],
            "ceiling_oa": comparisons.get("ceiling", {}).get(name, {}).get("oa", math.nan),
            "floor_oa": comparisons["floor"][name]["oa"],
        }
        for name, c in comparisons["model"].items()
    }
    shown = f"PATH/{Path(str(data['path'])).name}" if data.get("path") else None
    reference = result["sets"]["reference"]
    judged = {
        **settings,
        "data": shown,
        "reference": reference.replace(str(data["path"]), shown) if shown else reference,
        "mean_oa": result["summary"]["mean_oa"],
        "position": result["summary"]["position"],
        "features": features,
        "descriptions": result["descriptions"],
    }
    if "memorisation" in result:
        judged["memorisation"] = result["memorisation"]
    if "artists" in result:
        judged["artists"] = {k: result["artists"][k] for k in ("match_rate", "chance")}
    if "reference_artists" in result:
        judged["reference_artists"] = result["reference_artists"]
    if getattr(getattr(load_model(folder).sampler, "codec", None), "infilling", False):
        with tempfile.TemporaryDirectory() as out:
            infilled = evaluate(
                options([*args, f"out_dir={out}", *(f"{k}={v}" for k, v in CARD_INFILL.items())])
            )
        judged["infill"] = {
            **CARD_INFILL,
            "reference": infilled["sets"]["reference"].replace(str(data["path"]), shown)
            if shown
            else infilled["sets"]["reference"],
            "mean_oa": infilled["summary"]["mean_oa"],
            "position": infilled["summary"]["position"],
            **infilled["infill"],
        }
    return clean(judged)


def main(argv: list[str]) -> None:
    args = OmegaConf.from_dotlist(argv)
    usage = (
        "usage: python -m lm_music.export ckpt_path=RUN/checkpoints/best.ckpt out_dir=DIR "
        "[dtype=float32|float16|bfloat16] [score=false|true] [name=NAME], or "
        "python -m lm_music.export card=EXPORTED_FOLDER [data.path=... data.source=...] "
        "[decoding.temperature=T decoding.top_p=P decoding.cache_lambda=L decoding.cache_theta=TH "
        "decoding.refrain_start=S decoding.refrain_follow=F decoding.refrain_boost=B "
        "decoding.rhyme_candidates=K decoding.min_length=N] [score=true]"
    )
    known = (
        {"card", "data", "decoding", "score"}
        if "card" in args
        else {"ckpt_path", "out_dir", "dtype", "score", "name"}
    )
    unknown = set(args) - known
    if unknown or not (args.get("card") or (args.get("ckpt_path") and args.get("out_dir"))):
        sys.exit(usage + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    try:
        if "card" in args:
            data = OmegaConf.to_container(args.get("data") or OmegaConf.create({}))
            decoding = OmegaConf.to_container(args.get("decoding") or OmegaConf.create({}))
            written = rejudge(args.card, data, decoding, bool(args.get("score", False)))
        else:
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
