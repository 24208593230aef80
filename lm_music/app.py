"""A local page to play with the models: `python -m lm_music.app [port=7860] [runs_dir=logs] [host=127.0.0.1]`.

It lists the shipped models, every checkpoint under `runs_dir` and takes any path to a `.ckpt` or exported
folder; it draws through `generation.draw` with the package's sample defaults (`lm_music/sample_options.yaml`), as `sample.py` does, so one
seed gives the same text or MIDI in both. Weights are only ever read by the one loader (`weights_only` or
safetensors): the path box cannot make the server run code. Off loopback (`host=` another address) it
serves only the shipped models and checkpoints under `runs_dir`. The model picked is loaded once and kept
(per visitor) until another is picked. The Infill tab rewrites chosen bars of an uploaded MIDI file with a
model trained to infill, as `sample.py prime_midi=... infill_bars=... controls.*=...` does. Endpoints for
`gradio_client`: `/choose_model`, `/generate`, `/infill`.
"""

import ipaddress
import logging
import sys
import tempfile
from pathlib import Path

import gradio as gr
from omegaconf import OmegaConf

from lm_music import run_folder
from lm_music.cards import summary
from lm_music.checkpoints import PRETRAINED, pretrained_names
from lm_music.errors import UserError
from lm_music.generation import Model, decoding_defaults, draw, load_model
from lm_music.options import sample_options
from lm_music.tasks.registry import TASKS
from lm_music.threads import ThreadPolicy, start_looking

log = logging.getLogger(__name__)

MAX_SAMPLES = 8  # result slots on the page
INFILL_SAMPLES = 4  # result slots of the infill tab
INFILL_LENGTH = 1024  # tokens a fill may take (8 bars of POP909 take about 400)
DEFAULT_MODEL = f"{PRETRAINED}bach_chorales"
CONTROLS = sorted({control for task in TASKS.values() for control in task.page_controls})


def find_models(runs_dir: str | Path) -> list[str]:
    """The shipped models, then every checkpoint under `runs_dir` (newest first)."""
    found = sorted(Path(runs_dir).rglob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [f"{PRETRAINED}{name}" for name in pretrained_names()] + [str(p) for p in found]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Page:
    """What the page's events do; `restricted` (off loopback) keeps visitors to the shipped models and
    `runs_dir`."""

    def __init__(self, runs_dir: str | Path = "logs", threads: str | int = "auto", restricted: bool = False):
        self.runs_dir, self.restricted = Path(runs_dir), restricted
        self.threads = ThreadPolicy(threads)
        self.defaults = sample_options()

    def check_allowed(self, path: str) -> None:
        if not self.restricted or str(path).startswith(PRETRAINED):
            return
        runs = self.runs_dir.resolve()
        if not Path(path).resolve().is_relative_to(runs):
            raise UserError(
                f"this page serves only the shipped models and checkpoints under {self.runs_dir} "
                "(it listens beyond 127.0.0.1): pick one from the list"
            )

    def load(self, path: str, loaded: Model | None) -> Model:
        """The model at `path`: the one already loaded for this visitor, else read once by the loader."""
        if loaded is not None and loaded.path == str(path):
            return loaded
        self.check_allowed(path)
        model = load_model(str(path), "cpu")
        log.info("loaded %s", path)
        return model

    def describe(self, model: Model) -> str:
        """A card's summary, or task, architecture, parameters and the run's test metric."""
        checkpoint = model.checkpoint
        if "exported" in checkpoint:
            return checkpoint["exported"].get("summary") or model.path
        metrics = run_folder.metrics(run_folder.run_of(model.path))
        parameters = sum(p.numel() for p in model.sampler.net.parameters())
        return summary(model.task.name, checkpoint["hyper_parameters"], parameters, None, metrics)

    def choose_model(self, model_path: str, loaded: Model | None = None):
        """After a model is picked: its summary, the controls its task takes (artists for conditional
        lyrics models), its decoding defaults in their fields, the length's unit, the previous model's
        results cleared, and the loaded model, kept for the next clicks. A model that cannot be loaded is
        one error message; the page stays with the model it had (the box goes back to it, `build_app`), and
        picked again, the model already loaded leaves the page as it is."""
        try:
            model = self.load(model_path, loaded)
        except UserError as err:
            raise gr.Error(str(err), duration=8) from None
        # `picked` in build_app: summary, controls, temperature, length, the Infill tab's temperature, rendered,
        # texts, slots, the Infill tab's results, box, model
        if model is loaded:
            skipped = len(CONTROLS) + 6 + 3 * MAX_SAMPLES + 2 + 3 * INFILL_SAMPLES
            return [self.describe(model), *[gr.skip()] * skipped, model]
        artists = list(getattr(model.sampler, "artists", []) or [])
        if not getattr(model.sampler, "conditional", False):
            artists = []
        shown = set(model.task.page_controls)
        defaults = decoding_defaults(model)
        values = {
            "top_p": defaults.get("top_p") or 1.0,
            "top_k": defaults.get("top_k") or 0,
        }  # the defaults seen
        updates = [
            gr.update(visible=control in shown, **({"value": values[control]} if control in values else {}))
            for control in CONTROLS
            if control != "artist"
        ]
        artist = gr.update(choices=artists, value=artists[0] if artists else None, visible=bool(artists))
        decoding = [
            gr.update(value=defaults["temperature"]),
            gr.update(label=f"Length ({model.task.unit})"),
            gr.update(value=defaults["temperature"]),  # the Infill tab's
        ]
        cleared = [gr.update(value="", visible=False)] + [gr.update(value=None, visible=False)] * (
            3 * MAX_SAMPLES
        )
        infill_cleared = [gr.update(value="")] * 2 + [gr.update(value=None, visible=False)] * (
            3 * INFILL_SAMPLES
        )
        return [
            self.describe(model),
            *updates,
            artist,
            *decoding,
            gr.update(value=""),
            *cleared,
            *infill_cleared,
            gr.skip(),
            model,
        ]

    def generate(
        self,
        model_path: str,
        prime: str = "",
        artist: str | None = None,
        top_k: float = 0,
        top_p: float = 1.0,
        prime_midi: str | None = None,
        temperature: float = 1.0,
        length: float = 256,
        num_samples: float = 2,
        seed: float = 0,
        loaded: Model | None = None,
    ):
        """Draw samples through `generation.draw`; return the text box, the music slots, what rendered the
        audio and the model. Bad input is one error message; the results on the page stay as they were."""
        try:
            model = self.load(model_path, loaded)
            if not 1 <= int(num_samples) <= MAX_SAMPLES:
                raise UserError(f"number of samples must be between 1 and {MAX_SAMPLES}, got {num_samples}")
            if int(length) > model.task.max_page_length:
                raise UserError(
                    f"length {int(length)} is more than this page draws ({model.task.max_page_length} "
                    f"{model.task.unit}): use sample.py for longer"
                )
            options = OmegaConf.merge(
                self.defaults,
                {
                    "num_samples": int(num_samples),
                    "length": int(length),
                    "temperature": float(temperature),
                    "seed": int(seed),
                    "prime": str(prime or ""),
                    "artist": str(artist) if artist else None,
                    "top_k": int(top_k) if top_k else None,  # 0: off
                    "top_p": float(top_p),  # 1: off; the field shows the model's default when picked
                    "prime_midi": str(prime_midi) if prime_midi else None,  # an upload: a str subclass
                },
            )
            self.threads.start()
            self.threads.recheck()
            samples = draw(model, options)
            written = model.task.write(samples, Path(tempfile.mkdtemp(prefix="lm_music_app_")))
        except UserError as err:
            raise gr.Error(str(err), duration=8) from None
        rendered = getattr(samples, "rendered_by", "")
        rendered = gr.update(value=f"Audio rendered with {rendered}." if rendered else "")
        if model.task.page_shows == "text":
            hidden = [gr.update(visible=False)] * (3 * MAX_SAMPLES)
            return [gr.update(value=str(samples), visible=True), *hidden, rendered, model]
        updates = [gr.update(value="", visible=False)]
        by_suffix = {p.suffix: sorted(q for q in written if q.suffix == p.suffix) for p in written}
        for i in range(MAX_SAMPLES):
            files = [by_suffix.get(s, []) for s in (".png", ".wav", ".mid")]
            updates += [gr.update(value=str(f[i]) if i < len(f) else None, visible=i < len(f)) for f in files]
        return [*updates, rendered, model]

    def infill(
        self,
        model_path: str,
        song: str | None,
        bars: str = "",
        note_density: str = "",
        polyphony: str = "",
        temperature: float = 1.0,
        num_samples: float = 2,
        seed: float = 0,
        loaded: Model | None = None,
    ):
        """Rewrite `bars` ("5-8") of the uploaded `song` with the controls given (a value for every bar, or
        one per bar separated by commas; empty: free); return what was done, what rendered the audio, the
        result slots (picture and audio of the gap and the bars around it, the whole piece's MIDI) and the
        model. Bad input is one error message, as in `generate`."""
        try:
            model = self.load(model_path, loaded)
            if not song:
                raise UserError("upload the MIDI file whose bars the model should rewrite")
            if not 1 <= int(num_samples) <= INFILL_SAMPLES:
                raise UserError(
                    f"number of samples must be between 1 and {INFILL_SAMPLES}, got {num_samples}"
                )
            options = OmegaConf.merge(
                self.defaults,
                {
                    "num_samples": int(num_samples),
                    "length": INFILL_LENGTH,
                    "temperature": float(temperature),
                    "seed": int(seed),
                    "prime_midi": str(song),
                    "infill_bars": str(bars or ""),
                    "controls": {"note_density": _per_bar(note_density), "polyphony": _per_bar(polyphony)},
                },
            )
            if not options.infill_bars:
                raise UserError("give the bars to rewrite, e.g. 5-8")
            self.threads.start()
            self.threads.recheck()
            samples = draw(model, options)
            written = model.task.write(samples, Path(tempfile.mkdtemp(prefix="lm_music_infill_")))
        except UserError as err:
            raise gr.Error(str(err), duration=8) from None
        rendered = getattr(samples, "rendered_by", "")
        updates = [
            gr.update(value=str(samples)),
            gr.update(value=f"Audio rendered with {rendered}." if rendered else ""),
        ]
        by_suffix = {p.suffix: sorted(q for q in written if q.suffix == p.suffix) for p in written}
        for i in range(INFILL_SAMPLES):
            files = [by_suffix.get(s, []) for s in (".png", ".wav", ".mid")]
            updates += [gr.update(value=str(f[i]) if i < len(f) else None, visible=i < len(f)) for f in files]
        return [*updates, model]


def _per_bar(text: str | None) -> str | list[str] | None:
    """A control's field: empty (no control), one value for every bar, or one per bar separated by commas."""
    values = [v.strip() for v in str(text or "").split(",")]
    return None if values == [""] else values[0] if len(values) == 1 else values


def _result_slots(count: int, prefix: str = "") -> list:
    """`count` rows of a picture, a player and a MIDI file (hidden until filled)."""
    slots = []
    for i in range(count):
        with gr.Row():
            roll = gr.Image(label=f"sample {i}", visible=False, elem_id=f"{prefix}roll_{i}", scale=3)
            with gr.Column(scale=2):  # the player and the MIDI file under it: room for the file's name
                audio = gr.Audio(
                    label=f"sample {i}", visible=False, elem_id=f"{prefix}audio_{i}", type="filepath"
                )
                midi = gr.File(label=f"sample {i} MIDI", visible=False, elem_id=f"{prefix}midi_{i}")
            slots += [roll, audio, midi]
    return slots


def drawing(button, draw, inputs: list, results: list, loaded, api_name: str) -> None:
    """`button` runs `draw(*inputs, loaded)` into `results` and `loaded` (the visitor's model; endpoint
    `/api_name`). It is disabled while a request runs, so that a second click does not queue another; after
    bad input the error is shown once, the results stay as they were (their error badges reset) and the
    button is enabled again."""
    drawn = button.click(lambda: gr.update(interactive=False), None, button, api_visibility="private").then(
        draw, [*inputs, loaded], [*results, loaded], show_progress="full", api_name=api_name
    )
    drawn.success(lambda: gr.update(interactive=True), None, button, api_visibility="private")
    drawn.failure(
        lambda: [gr.update()] * len(results) + [gr.update(interactive=True)],
        None,
        [*results, button],
        show_progress="hidden",
        api_visibility="private",
    )


def build_app(
    runs_dir: str | Path = "logs", threads: str | int = "auto", host: str = "127.0.0.1"
) -> gr.Blocks:
    page = Page(runs_dir, threads, restricted=not is_loopback(host))
    models = find_models(runs_dir)
    first = DEFAULT_MODEL if DEFAULT_MODEL in models else (models[0] if models else None)
    defaults = page.defaults
    with gr.Blocks(title="lm_music") as app:
        gr.Markdown("# lm_music\nSample the shipped models, your runs' checkpoints, or any exported model.")
        loaded = gr.State(None)
        with gr.Row():
            model = gr.Dropdown(
                models, value=first, label="Model", allow_custom_value=True, elem_id="model", scale=3
            )
            refresh = gr.Button("Rescan runs", scale=0)
        path = gr.Textbox(label="...or a path to a .ckpt or exported folder (Enter loads it)", elem_id="path")
        description = gr.Markdown(elem_id="summary")
        with gr.Tab("Generate"):
            controls = {
                "prime": gr.Textbox(label="Prime text", value="", elem_id="prime", visible=False),
                "artist": gr.Dropdown(
                    [], label="Artist", allow_custom_value=True, visible=False, elem_id="artist"
                ),
                "top_k": gr.Number(
                    label="top-k (0: off)", value=0, precision=0, elem_id="top_k", visible=False
                ),
                "top_p": gr.Number(label="top-p (1: off)", value=1.0, elem_id="top_p", visible=False),
                "prime_midi": gr.File(
                    label="Prime MIDI (optional)",
                    file_types=[".mid", ".midi"],
                    type="filepath",
                    elem_id="prime_midi",
                ),
            }
            with gr.Row():
                temperature = gr.Number(label="Temperature", value=1.0, elem_id="temperature")
                length = gr.Number(
                    label="Length (characters or frames)", value=256, precision=0, elem_id="length"
                )
                num_samples = gr.Number(
                    label="Number of samples", value=2, precision=0, elem_id="num_samples"
                )
                seed = gr.Number(label="Seed", value=defaults.seed, precision=0, elem_id="seed")
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            texts = gr.Textbox(label="Drawn text", lines=20, visible=False, elem_id="texts")
            rendered = gr.Markdown(elem_id="rendered")
            slots = _result_slots(MAX_SAMPLES)
        with gr.Tab("Infill", elem_id="infill_tab"):
            gr.Markdown(
                "Rewrite bars of a MIDI file with a model trained to infill (e.g. `pretrained:pop909_infill`): "
                "every other note stays as the file has it. Controls: one value for every new bar, or one per "
                "bar separated by commas; empty leaves the model free."
            )
            song = gr.File(
                label="MIDI file", file_types=[".mid", ".midi"], type="filepath", elem_id="infill_song"
            )
            with gr.Row():
                bars = gr.Textbox(label="Bars to rewrite (e.g. 5-8)", value="5-8", elem_id="infill_bars")
                density = gr.Textbox(label="Notes per bar (0-18)", value="", elem_id="infill_density")
                polyphony = gr.Textbox(
                    label="Notes at once (N or MIN-MAX, 1-6)", value="", elem_id="infill_polyphony"
                )
            with gr.Row():
                infill_temperature = gr.Number(label="Temperature", value=1.0, elem_id="infill_temperature")
                infill_samples = gr.Number(
                    label="Number of samples", value=2, precision=0, elem_id="infill_samples"
                )
                infill_seed = gr.Number(label="Seed", value=defaults.seed, precision=0, elem_id="infill_seed")
            infill_button = gr.Button("Infill", variant="primary", elem_id="infill")
            infilled = gr.Markdown(elem_id="infilled")
            infill_rendered = gr.Markdown(elem_id="infill_rendered")
            infill_slots = _result_slots(INFILL_SAMPLES, "infill_")
        shown = [controls[c] for c in CONTROLS if c != "artist"] + [controls["artist"]]
        picked = [
            description,
            *shown,
            temperature,
            length,
            infill_temperature,
            rendered,
            texts,
            *slots,
            infilled,
            infill_rendered,
            *infill_slots,
            model,
            loaded,
        ]
        # a model that cannot be loaded: its error shown once (no status badges left on the outputs), and the
        # box put back to the model the page still has
        model.change(
            page.choose_model, [model, loaded], picked, api_name="choose_model", show_progress="hidden"
        ).failure(
            lambda kept: gr.update(value=kept.path) if kept is not None else gr.skip(),
            loaded,
            model,
            api_visibility="private",
        )
        path.submit(
            lambda p: gr.update(value=p, choices=[*find_models(runs_dir), p]),
            path,
            model,
            api_visibility="private",
        )
        refresh.click(lambda: gr.update(choices=find_models(runs_dir)), None, model, api_visibility="private")
        if first:
            app.load(page.choose_model, [model, loaded], picked, api_visibility="private")
        inputs = [model, *(controls[c] for c in ("prime", "artist", "top_k", "top_p", "prime_midi"))]
        results = [texts, *slots, rendered]
        drawing(
            generate,
            page.generate,
            [*inputs, temperature, length, num_samples, seed],
            results,
            loaded,
            "generate",
        )
        drawing(
            infill_button,
            page.infill,
            [model, song, bars, density, polyphony, infill_temperature, infill_samples, infill_seed],
            [infilled, infill_rendered, *infill_slots],
            loaded,
            "infill",
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
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start_looking()
    host = str(args.get("host", "127.0.0.1"))
    app = build_app(args.get("runs_dir", "logs"), args.get("threads", "auto"), host)
    app.queue().launch(
        server_name=host,
        server_port=int(args.get("port", 7860)),
        share=False,
        allowed_paths=[tempfile.gettempdir()],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
