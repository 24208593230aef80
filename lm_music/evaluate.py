"""`python -m lm_music.evaluate ckpt_path=X|pretrained=NAME [num_samples=64 length=256 seed=0] [samples_dir=DIR]
[reference=test|valid|train] [reference_dir=MIDI_DIR] [data.path=...] [infill=BARS] [out_dir=evaluation]`

judges samples, not only the likelihood: it draws samples through the sampling code (`generation.load_model`
and `generation.draw`, as sample.py does) or reads a folder of them, computes per-piece (per-song) features
on them and on a reference set of real data, compares the distributions (overlapping area and KL divergence,
as Yang & Lerch 2018) beside two anchors scored the same way, the ceiling (real data against real data) and
the floor (independent draws from the training set's unigram statistics), prints the table, and writes
`evaluation.json` and `evaluation.png` into `out_dir`. The features are the task's (`lm_music.evaluation`).
With `infill=BARS` (models trained to infill), the samples are gaps of BARS bars filled in reference songs,
judged against the real bars they replace, with the controls' adherence and the joins (`Task.evaluation`'s
`infilling`).
"""

import math
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lm_music.errors import UserError

OWN_KEYS = {"samples_dir", "reference", "reference_dir", "data", "out_dir", "infill"}
DEFAULTS = {"num_samples": 64, "length": 256, "reference": "test", "out_dir": "evaluation", "audio": False}
USAGE = (
    "usage: python -m lm_music.evaluate ckpt_path=RUN/checkpoints/last.ckpt|pretrained=NAME "
    "[num_samples=64 length=256 seed=0 temperature=T ...] [samples_dir=DIR] [reference=test|valid|train] "
    "[reference_dir=MIDI_DIR] [data.path=FILE_OR_FOLDER data.source=...] [infill=BARS] [out_dir=evaluation]"
)


def options(argv: list[str]) -> DictConfig:
    """The command line as a config: sample.py's keys (num_samples, length, seed, ...) and this command's."""
    from lm_music.options import sample_options

    try:
        args = OmegaConf.from_dotlist(argv)
    except Exception as error:  # a malformed key=value
        raise UserError(f"{error}; {USAGE}") from None
    known = set(sample_options()) | OWN_KEYS
    unknown = sorted(set(args) - known)
    if unknown:
        raise UserError(f"unknown: {', '.join(unknown)}; {USAGE}")
    return OmegaConf.merge(sample_options(), DEFAULTS, args)


def evaluate(cfg: DictConfig) -> dict:
    """Draw (or read) the samples, score them and the anchors against the reference, write evaluation.json
    and evaluation.png into `cfg.out_dir`; return the result."""
    from lm_music.evaluation.compare import compare_sets, mean_oa
    from lm_music.evaluation.report import position, write_json, write_png
    from lm_music.evaluation.sets import SPLIT_NAMES
    from lm_music.generation import check_options, draw, load_model, model_path, with_model_defaults
    from lm_music.threads import ThreadPolicy

    if cfg.reference not in SPLIT_NAMES:
        raise UserError(f"reference must be one of {', '.join(SPLIT_NAMES)}, got {cfg.reference!r}")
    timing, clock = {}, time.perf_counter()
    path = model_path(cfg)
    if not cfg.get("samples_dir"):
        check_options(cfg)
    threads = ThreadPolicy(cfg.get("threads", "auto"))
    model = load_model(path, cfg.get("device"))
    cfg = with_model_defaults(model, cfg)
    threads.start()
    timing["model_s"], clock = time.perf_counter() - clock, time.perf_counter()
    evaluation = model.task.evaluation(model)
    if cfg.get("infill"):
        if not hasattr(evaluation, "infilling") or cfg.get("samples_dir"):
            raise UserError(
                "infill= judges a model trained to infill bars of songs it draws itself (no samples_dir)"
            )
        evaluation = evaluation.infilling(int(cfg.infill))
    loaded = evaluation.load_reference(cfg)  # before drawing: a missing reference is one line, at once
    timing["reference_s"], clock = time.perf_counter() - clock, time.perf_counter()
    if cfg.get("samples_dir"):
        folder = Path(str(cfg.samples_dir)).expanduser()
        if not folder.exists():
            raise UserError(f"samples_dir {folder} does not exist")
        samples = evaluation.read_folder(folder)
        drawn = f"{len(samples)} samples read from {folder}"
    elif cfg.get("infill"):
        samples = evaluation.draw(model, cfg)
        drawn = f"{len(samples)} gaps of {cfg.infill} bars filled by {path} (seed {cfg.seed}, temperature {cfg.temperature})"
    else:
        samples = evaluation.drawn(draw(model, cfg))
        drawn = (
            f"{len(samples)} samples of length {cfg.length} drawn from {path} "
            f"(seed {cfg.seed}, temperature {cfg.temperature})"
        )
    timing["samples_s"], clock = time.perf_counter() - clock, time.perf_counter()
    sets = evaluation.sets(samples, loaded, cfg)
    named = {"samples": sets.samples, "reference": sets.reference, "floor": sets.floor}
    if sets.ceiling is not None:
        named["ceiling"] = sets.ceiling
    if sets.ceiling_against is not None:
        named["ceiling_against"] = sets.ceiling_against
    features = evaluation.features_of(named)
    comparisons = {
        "model": compare_sets(features["samples"], features["reference"]),
        "floor": compare_sets(features["floor"], features["reference"]),
    }
    if "ceiling" in features:
        against = features.get("ceiling_against", features["reference"])
        comparisons["ceiling"] = compare_sets(features["ceiling"], against)
    extras = evaluation.extras(named)
    timing["scoring_s"] = time.perf_counter() - clock
    mean = {
        a: mean_oa(comparisons[a]) if a in comparisons else math.nan for a in ("model", "ceiling", "floor")
    }
    result = {
        "model": path,
        "task": model.task.name,
        "samples": drawn,
        "sets": {"samples": drawn, **sets.described},
        "notes": sets.notes,
        "descriptions": evaluation.descriptions,
        "summary": {"mean_oa": mean, "position": position(mean["model"], mean["ceiling"], mean["floor"])},
        "comparisons": comparisons,
        "features": {name: {k: v.tolist() for k, v in values.items()} for name, values in features.items()},
        **extras,
        "timing": timing,
    }
    out = Path(str(cfg.out_dir))
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    write_png(out / "evaluation.png", result, f"{path}: {drawn}")
    timing["picture_s"] = time.perf_counter() - clock
    write_json(out / "evaluation.json", result)  # last: its presence says the evaluation is complete
    return result


def main(argv: list[str]) -> None:
    from lm_music.evaluation.report import memorisation_lines, table
    from lm_music.threads import start_looking

    if {"-h", "--help"} & set(argv):
        print(f"{__doc__}\n{USAGE}")
        return
    start_looking()
    try:
        cfg = options(argv)
        result = evaluate(cfg)
    except UserError as err:
        sys.exit(f"error: {err}")
    for note in result["notes"]:
        print(f"note: {note}")
    for name, line in result["sets"].items():
        print(f"{name}: {line}")
    print(table(result))
    if "reference_artists" in result:
        known = result["reference_artists"]
        print(
            f"artists: of {known['songs']} reference songs, the model's likelihood names the true artist first "
            f"in {known['top1']:.0%} (among its top 3 in {known['top3']:.0%}; chance {known['chance_top1']:.0%} "
            f"and {known['chance_top3']:.0%}, always the most common artist {known['most_common_top1']:.0%})"
        )
    if "artists" in result:
        artists = result["artists"]
        print(
            f"artists: the model's likelihood picks the artist asked for in {artists['match_rate']:.0%} of the "
            f"samples (chance {artists['chance']:.0%})"
        )
    if "memorisation" in result:
        for line in memorisation_lines(result["memorisation"]):
            print(f"memorisation: {line}")
    for line in result.get("lines", []):  # what a task's evaluation says beside the table
        print(line)
    out = Path(str(cfg.out_dir))
    print(f"wrote {out / 'evaluation.json'}, {out / 'evaluation.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
