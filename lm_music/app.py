"""A local page to play with the models: `python -m lm_music.app [port=7860] [runs_dir=logs] [host=127.0.0.1]`.

It lists the shipped models, every checkpoint under `runs_dir` and takes any path to a `.ckpt` or exported
folder; it draws through `generation.sample`, as `sample.py` does, so one seed gives the same text or MIDI in
both. Weights are only ever read by `load_checkpoint` (`weights_only` or safetensors): the path box cannot
make the server run code. A Gradio app, so it also runs as a Hugging Face Space.
"""

import json
import sys
import tempfile
from pathlib import Path

import gradio as gr
from omegaconf import OmegaConf

from lm_music.checkpoints import load_checkpoint
from lm_music.errors import UserError
from lm_music.export import PRETRAINED, pretrained_names
from lm_music.threads import start_looking

MAX_SAMPLES = 8  # result slots on the page
MAX_LENGTH = {"lyrics": 5000, "pianoroll": 2048}  # characters / frames: longer belongs to sample.py
DEFAULT_MODEL = f"{PRETRAINED}bach_chorales"


def find_models(runs_dir: str | Path) -> list[str]:
    """The shipped models, then every checkpoint under `runs_dir` (newest first)."""
    found = sorted(Path(runs_dir).rglob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [f"{PRETRAINED}{name}" for name in pretrained_names()] + [str(p) for p in found]


def describe(path: str, checkpoint: dict) -> str:
    """One line: a card's summary, or task, architecture, parameters and the run's test metric."""
    if "exported" in checkpoint:
        return checkpoint["exported"].get("summary") or path
    hyper = checkpoint["hyper_parameters"]
    parameters = sum(v.numel() for k, v in checkpoint["state_dict"].items() if k.startswith("net."))
    arch = hyper.get("arch", "rnn")
    task = "lyrics" if checkpoint["lm_music_task"] == "lyrics" else "piano rolls"
    line = f"{task}, {arch}, {parameters / 1e6:.2f} M parameters"
    if hyper.get("conditional"):
        line += f", conditioned on {len(hyper.get('artists') or [])} artists"
    metrics_file = Path(path).parent.parent / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        shown = [f"{k} {metrics[k]:.3f}" for k in ("test/nll", "test/nll_all", "test/bpc") if metrics.get(k)]
        line += f": {', '.join(shown)}" if shown else ""
    return line


def choose_model(path: str):
    """After a model is picked: its summary, and the controls of its task (artists for conditional models)."""
    try:
        checkpoint = load_checkpoint(path)
    except UserError as err:
        raise gr.Error(str(err)) from None
    lyrics = checkpoint["lm_music_task"] == "lyrics"
    hyper = checkpoint["hyper_parameters"]
    artists = list(hyper.get("artists") or []) if hyper.get("conditional") else []
    return (
        describe(path, checkpoint),
        gr.update(visible=lyrics),
        gr.update(visible=not lyrics),
        gr.update(choices=artists, value=artists[0] if artists else None, visible=bool(artists)),
    )


def draw(
    path, prime, artist, top_k, top_p, prime_midi, temperature, length, num_samples, seed, threads="auto"
):
    """Draw samples through `generation.sample` into a fresh folder; return the page's outputs."""
    from lm_music.generation import sample

    try:
        checkpoint = load_checkpoint(path)
        task = checkpoint["lm_music_task"]
        if not 1 <= int(num_samples) <= MAX_SAMPLES:
            raise UserError(f"number of samples must be between 1 and {MAX_SAMPLES}, got {num_samples}")
        if int(length) > MAX_LENGTH[task]:
            raise UserError(
                f"length {int(length)} is more than this page draws ({MAX_LENGTH[task]}): use sample.py for longer"
            )
        out_dir = Path(tempfile.mkdtemp(prefix="lm_music_app_"))
        cfg = OmegaConf.create(
            {
                "ckpt_path": str(path),
                "num_samples": int(num_samples),
                "length": int(length),
                "temperature": float(temperature),
                "seed": int(seed),
                "out_dir": str(out_dir),
                "threads": threads,
                "prime": str(prime or ""),
                "artist": str(artist) if artist else None,
                "top_k": int(top_k) if top_k else None,
                "top_p": float(top_p) if top_p and float(top_p) < 1 else None,
                "prime_midi": str(prime_midi) if prime_midi else None,  # an upload: a str subclass
                "prime_frames": 16,
                "tempo": 120.0,
                "velocity": 80,
                "audio": True,
                "sample_rate": 22050,
            }
        )
        written = sample(cfg)
    except UserError as err:
        raise gr.Error(str(err)) from None
    if task == "lyrics":
        text = (out_dir / "samples.txt").read_text(encoding="utf-8")
        return [gr.update(value=text, visible=True)] + [gr.update(visible=False)] * (3 * MAX_SAMPLES)
    updates = [gr.update(value="", visible=False)]
    for i in range(MAX_SAMPLES):
        midi = out_dir / f"sample_{i:03d}.mid"
        shown = midi in written
        updates += [
            gr.update(value=str(midi.with_suffix(".png")) if shown else None, visible=shown),
            gr.update(value=str(midi.with_suffix(".wav")) if shown else None, visible=shown),
            gr.update(value=str(midi) if shown else None, visible=shown),
        ]
    return updates


def build_app(runs_dir: str | Path = "logs", threads: str | int = "auto") -> gr.Blocks:
    models = find_models(runs_dir)
    first = DEFAULT_MODEL if DEFAULT_MODEL in models else (models[0] if models else None)
    with gr.Blocks(title="lm_music") as app:
        gr.Markdown("# lm_music\nSample the shipped models, your runs' checkpoints, or any exported model.")
        with gr.Row():
            model = gr.Dropdown(
                models, value=first, label="Model", allow_custom_value=True, elem_id="model", scale=3
            )
            refresh = gr.Button("Rescan runs", scale=0)
        path = gr.Textbox(label="...or a path to a .ckpt or exported folder (Enter loads it)", elem_id="path")
        summary = gr.Markdown(elem_id="summary")
        with gr.Group(visible=False) as lyrics_controls:
            prime = gr.Textbox(label="Prime text", elem_id="prime")
            artist = gr.Dropdown([], label="Artist", allow_custom_value=True, visible=False, elem_id="artist")
            with gr.Row():
                top_k = gr.Number(label="top-k (0: off)", value=0, precision=0, elem_id="top_k")
                top_p = gr.Number(label="top-p (1: off)", value=1.0, elem_id="top_p")
        with gr.Group(visible=True) as music_controls:
            prime_midi = gr.File(
                label="Prime MIDI (optional)",
                file_types=[".mid", ".midi"],
                type="filepath",
                elem_id="prime_midi",
            )
        with gr.Row():
            temperature = gr.Number(label="Temperature", value=1.0, elem_id="temperature")
            length = gr.Number(
                label="Length (characters or frames)", value=256, precision=0, elem_id="length"
            )
            num_samples = gr.Number(label="Samples", value=2, precision=0, elem_id="num_samples")
            seed = gr.Number(label="Seed", value=0, precision=0, elem_id="seed")
        generate = gr.Button("Generate", variant="primary", elem_id="generate")
        texts = gr.Textbox(label="Samples", lines=20, visible=False, elem_id="texts")
        slots = []
        for i in range(MAX_SAMPLES):
            with gr.Row():
                slots += [
                    gr.Image(label=f"sample {i}", visible=False, elem_id=f"roll_{i}", scale=3),
                    gr.Audio(label=f"sample {i}", visible=False, elem_id=f"audio_{i}", type="filepath"),
                    gr.File(label=f"sample {i} MIDI", visible=False, elem_id=f"midi_{i}"),
                ]
        picked = [summary, lyrics_controls, music_controls, artist]
        model.change(choose_model, model, picked)
        path.submit(lambda p: gr.update(value=p, choices=[*find_models(runs_dir), p]), path, model)
        refresh.click(lambda: gr.update(choices=find_models(runs_dir)), None, model)
        if first:
            app.load(choose_model, model, picked)
        generate.click(
            lambda *values: draw(*values, threads=threads),
            [model, prime, artist, top_k, top_p, prime_midi, temperature, length, num_samples, seed],
            [texts, *slots],
            show_progress="full",
        )
    return app


def main(argv: list[str]) -> None:
    args = OmegaConf.from_dotlist(argv)
    unknown = set(args) - {"port", "host", "runs_dir", "threads"}
    if unknown:
        sys.exit(
            "usage: python -m lm_music.app [port=7860] [host=127.0.0.1] [runs_dir=logs] [threads=auto] "
            f"(unknown: {', '.join(sorted(unknown))})"
        )
    start_looking()
    app = build_app(args.get("runs_dir", "logs"), args.get("threads", "auto"))
    app.queue().launch(
        server_name=str(args.get("host", "127.0.0.1")),
        server_port=int(args.get("port", 7860)),
        share=False,
        allowed_paths=[tempfile.gettempdir()],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
