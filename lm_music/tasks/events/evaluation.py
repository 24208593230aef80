"""How the evaluator judges event-token models: samples and real pieces as ids of the model's tokenizer, the
roll and expressive features of `features`, copying of notes from the training pieces."""

from functools import partial
from pathlib import Path

import numpy as np
import torch

import lm_music.tasks.events.features as event_features
import lm_music.tasks.events.infill as infill
from lm_music.cache import ContinuousCache
from lm_music.data.midi_folder import read_folder
from lm_music.errors import UserError
from lm_music.evaluation.compare import check_reference
from lm_music.evaluation.sets import CEILING_OF, SPLIT_NAMES, Sets, data_settings, note_memorisation
from lm_music.tasks.events.codec import read_notes


class EventEvaluation:
    """Event-token models: samples and real pieces as ids of the model's MidiTok tokenizer (a reference cut to
    the samples' number of tokens compares alike), the roll features on a 16th-note grid and the expressive
    ones of `lm_music.tasks.events.features` (velocity spread, off-grid onsets, grammar errors)."""

    features = event_features.FEATURES
    descriptions = event_features.DESCRIPTIONS
    folder_files = "*.mid / *.midi"
    telling = {
        "velocity_spread": "mean",
        "off_grid_onsets": "mean",
        "grammar_errors": "mean",
        "polyphony": "mean",
    }

    def __init__(self, model) -> None:
        self.model = model
        self.codec = model.sampler.codec
        self.training = None  # the training pieces' ids: what copying is measured against

    def infilling(self, bars: int) -> "InfillEvaluation":
        """The evaluation of infilling gaps of `bars` bars (`evaluate ... infill=BARS`)."""
        return InfillEvaluation(self.model, bars)

    def drawn(self, samples) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=np.int32) for ids in samples.ids]

    def draw_in_training(self, module, num_samples: int, length: int, temperature: float, generator) -> list:
        """Ids drawn by a LightningModule during training (`callbacks.SampleQuality`)."""
        rows = module.sample(num_samples, length, temperature, generator=generator)
        return [np.asarray(ids, dtype=np.int32) for ids in rows]

    def read_folder(self, folder: Path) -> list[np.ndarray]:
        """The MIDI files of a folder (sample.py's output, a reference_dir: every file) as the model's ids,
        tokenized again (their grammar is then the tokenizer's own)."""
        scores = read_folder(folder, lambda file: read_notes(file, self.codec.tracks), by_split=False)[0]
        return [self.codec.encode(score) for score in scores.values()]

    def load_reference(self, args) -> dict:
        """The real pieces: reference_dir's, or the model's data folder tokenized with the model's tokenizer."""
        if args.get("reference_dir"):
            folder = Path(str(args.reference_dir)).expanduser()
            pieces = self.read_folder(folder)
            check_reference(len(pieces), f"reference_dir {folder}")
            return {"splits": {name: pieces for name in SPLIT_NAMES}, "where": str(folder)}
        from lm_music.tasks.events.datamodule import EventDataModule

        data = data_settings(
            self.model.checkpoint, dict(args.get("data") or {}), " or reference_dir=MIDI_FOLDER"
        )
        keys = ("valid_fraction", "test_fraction", "seed", "cache_dir")
        module = EventDataModule(str(data["path"]), **{k: data[k] for k in keys if data.get(k) is not None})
        module.adopt(self.model.checkpoint["hyper_parameters"])
        module.setup()
        splits = {name: [np.asarray(ids) for ids in module.datasets[name].sequences] for name in SPLIT_NAMES}
        name = str(args.get("reference", "test"))
        check_reference(len(splits[name]), f"the {name} split of {data['path']}")
        return {"splits": splits, "where": data["path"]}

    def sets(self, samples: list, loaded: dict, args) -> Sets:
        splits, name = loaded["splits"], str(args.get("reference", "test"))
        longest = max(len(ids) for ids in samples)
        reference = [ids[:longest] for ids in splits[name]]
        ceiling = [ids[:longest] for ids in splits[CEILING_OF[name]]]
        same = splits[name] is splits[CEILING_OF[name]]  # reference_dir: one set of pieces
        lengths = [len(ids) for ids in samples]
        self.training = None if same else splits["train"]
        sets = Sets(
            samples,
            reference,
            None if same or len(ceiling) < 2 else ceiling,
            event_features.floor_pieces(splits["train"], lengths, int(args.get("seed", 0))),
            splits["train"],
            {
                "reference": f"the {name} split of {loaded['where']} ({len(reference)} pieces, cut to {longest} "
                "tokens)",
                "ceiling": f"the {CEILING_OF[name]} split against the {name} split",
                "floor": "tokens drawn independently with the training pieces' token frequencies",
            },
        )
        if same:
            sets.notes.append("no ceiling: reference_dir is one set of pieces")
        return sets

    def features_of(self, named: dict[str, list]) -> dict[str, dict[str, np.ndarray]]:
        return {name: event_features.set_features(self.codec, values) for name, values in named.items()}

    def extras(self, named: dict[str, list]) -> dict:
        if self.training is None:
            return {}
        symbols = partial(event_features.note_symbols, self.codec)
        return {"memorisation": note_memorisation(symbols, self.training, named)}


MARGIN = 4  # bars kept on either side of a judged gap, so that it has music around it


class InfillEvaluation(EventEvaluation):
    """`python -m lm_music.evaluate ... infill=BARS`: a model trained to infill, judged on gaps of BARS bars
    cut at a seeded place from `num_samples` songs of the reference split (at least MARGIN bars from either
    end). The fills drawn without controls are the samples, the real bars they replace the reference, gaps
    of the ceiling split the ceiling, the usual unigram draws the floor: the same features and OA as any
    sample. Each gap is drawn a second time with the controls of another song's real gap in the same time
    signature (its bars' note density and polyphony), and the report says how closely the bars follow them (density NRMSE: RMSE over
    the requests' standard deviation; polyphony: exact (min, max) matches) against the fills drawn without,
    and how the new bars join the bars around them (density steps at the joins, pitch-class likeness to the
    context) against the real ones."""

    def __init__(self, model, bars: int) -> None:
        super().__init__(model)
        if not self.codec.infilling:
            raise UserError("infill= judges a model trained to infill (e.g. pretrained=pop909_infill)")
        if bars < 1:
            raise UserError(f"infill= is the number of bars of each gap, at least 1, got {bars}")
        self.bars = bars
        self.cases: list = []
        self.fills: dict[str, list[np.ndarray]] = {}
        self.requests: list[list[tuple[int, int, int]]] = []
        self.loaded: dict = {}

    def load_reference(self, args) -> dict:
        self.loaded = super().load_reference(args)
        return self.loaded

    def gaps(self, pieces: list[np.ndarray], count: int, seed: int) -> list[tuple]:
        """(ids without the end id, bar starts, Gap) of `count` pieces long enough, a seeded gap in each."""
        rng = np.random.default_rng(seed)
        marks = (self.codec.INFILL, self.codec.FILL_START, self.codec.FILL_END)
        cases = []
        long = [p[p != self.codec.EOS] for p in pieces]
        long = [p for p in long if len(infill.bar_starts(p, self.codec.BAR)) > 2 * MARGIN + self.bars]
        if not long:
            raise UserError(
                f"no reference piece has {2 * MARGIN + self.bars + 1} bars: give a smaller infill="
            )
        for i in rng.permutation(max(count, len(long)))[:count] % len(long):
            ids = long[i]
            starts = infill.bar_starts(ids, self.codec.BAR)
            first = int(rng.integers(MARGIN, len(starts) - self.bars - MARGIN + 1))
            gap = infill.Gap(first, first + self.bars - 1)
            prime, real = infill.layout(ids, starts, gap, marks)
            cases.append((ids, starts, gap, prime, real))
        return cases

    def draw(self, model, cfg) -> list[np.ndarray]:
        """One fill of each gap without controls (the samples), one with a donor gap's controls."""
        self.cases = self.gaps(self.loaded["splits"][str(cfg.reference)], int(cfg.num_samples), int(cfg.seed))
        sampler = model.sampler
        # one stream for the free fills (the samples judged), one for the controlled: neither moves the other
        generators = {
            kind: torch.Generator(device=sampler.device).manual_seed(int(cfg.seed) + k)
            for k, kind in enumerate(("free", "controlled"))
        }
        measured = [infill.bar_measures(self.codec, real) for *_, real in self.cases]
        meters = [self._meter(real) for *_, real in self.cases]
        self.fills = {"free": [], "controlled": []}
        self.requests = []
        for i, (*_, prime, _real) in enumerate(self.cases):
            # the next gap of another song in the same time signature: bars a piece in this meter could have,
            # which nothing in this context implies
            others = [(i + k) % len(self.cases) for k in range(1, len(self.cases))]
            same = [j for j in others if meters[j] == meters[i] and self.cases[j][0] is not self.cases[i][0]]
            donor = measured[(same or others or [i])[0]]
            self.requests.append(donor)
            controls = {
                "note_density": [d for d, _, _ in donor],
                "polyphony": [f"{lo}-{hi}" if d else None for d, lo, hi in donor],
            }
            for kind, given in (("free", {}), ("controlled", controls)):
                control = infill.BarControl(
                    self.codec,
                    infill.control_ids(self.codec, given, self.bars),
                    1,
                    self.codec.grammar(prime.tolist(), 1) if cfg.get("grammar", True) else None,
                    gap=self.bars,
                )
                row = sampler.draw_ids(
                    prime.tolist(),
                    1,
                    int(cfg.length),
                    cfg.temperature,
                    cfg.get("top_k"),
                    cfg.get("top_p"),
                    generators[kind],
                    processor=control,
                    cache=ContinuousCache.from_options(cfg),
                )[0]
                self.fills[kind].append(
                    np.asarray(infill.fill_of(row, self.codec, self.bars), dtype=np.int32)
                )
        return self.fills["free"]

    def _meter(self, ids) -> str:
        """The time signature token of a gap's first bar ("" where it has none)."""
        table = self.codec.names()
        return next((table[i] for i in ids if table[i].startswith("TimeSig_")), "")

    def sets(self, samples: list, loaded: dict, args) -> Sets:
        splits, name = loaded["splits"], str(args.get("reference", "test"))
        reference = [real for *_, real in self.cases]
        ceiling = [
            real
            for *_, real in self.gaps(splits[CEILING_OF[name]], len(self.cases), int(args.get("seed", 0)) + 1)
        ]
        return Sets(
            samples,
            reference,
            ceiling,
            event_features.floor_pieces(splits["train"], [len(s) for s in samples], int(args.get("seed", 0))),
            splits["train"],
            {
                "reference": f"the real {self.bars}-bar gaps of {len(reference)} songs of the {name} split of "
                f"{loaded['where']}, which the samples fill",
                "ceiling": f"real {self.bars}-bar gaps of the {CEILING_OF[name]} split against them",
                "floor": "tokens drawn independently with the training pieces' token frequencies",
            },
        )

    def extras(self, named: dict[str, list]) -> dict:
        """Control adherence and how the bars join the music around them."""
        codec, bars = self.codec, self.bars
        requested = np.array([r for rows in self.requests for r in rows], dtype=float)
        result = {"bars": bars, "gaps": len(self.cases), "margin": MARGIN}
        short = sum(np.sum(f == codec.BAR) < bars for f in self.fills["free"] + self.fills["controlled"])
        result["fills_cut_by_length"] = int(short)
        measured = {  # every bar of every fill, (notes, polyphony min, max), measured once
            kind: np.array([m for f in fills for m in _padded(infill.bar_measures(codec, f), bars)], float)
            for kind, fills in self.fills.items()
        }
        for kind in ("free", "controlled"):
            got = measured[kind]
            playing = requested[:, 0] > 0
            spread = requested[:, 0].std() or 1.0
            result[kind] = {
                "density_nrmse": float(np.sqrt(np.mean((got[:, 0] - requested[:, 0]) ** 2)) / spread),
                "polyphony_exact": float(np.mean(np.all(got[playing, 1:] == requested[playing, 1:], axis=1))),
                "density_mean": float(got[:, 0].mean()),
            }
            result[kind]["join"] = _joins(codec, self.cases, self.fills[kind])
        result["real"] = {"join": _joins(codec, self.cases, [real for *_, real in self.cases])}
        moved = measured["controlled"][:, 0] - measured["free"][:, 0]
        result["density_change_by_controls"] = float(np.abs(moved).mean())
        return {"infill": result, "lines": infill_lines(result)}


def _padded(measures: list, bars: int) -> list:
    """A fill's measures as `bars` rows (a fill cut short counts its missing bars as empty)."""
    return (measures + [(0, 0, 0)] * bars)[:bars]


def _pitch_classes(codec, ids) -> np.ndarray:
    score, _ = codec.decode(ids)
    pitches = np.concatenate([t.notes.numpy()["pitch"] for t in score.tracks] or [np.zeros(0, int)])
    return np.bincount(pitches.astype(int) % 12, minlength=12).astype(float)


def _joins(codec, cases: list, fills: list) -> dict:
    """Mean note-density step from the bar before the gap to its first bar and from its last to the bar
    after, and the cosine of the gap's pitch-class histogram with its MARGIN bars either side."""
    steps, likeness = [], []
    for (ids, starts, gap, _, _), fill in zip(cases, fills):
        around = infill.bar_measures(codec, ids[starts[gap.first - 1] : starts[gap.first]])
        after = infill.bar_measures(codec, ids[starts[gap.last + 1] : starts[gap.last + 2]])
        mine = _padded(infill.bar_measures(codec, fill), gap.bars)
        steps += [abs(mine[0][0] - around[0][0]), abs(mine[-1][0] - after[0][0])]
        context = _pitch_classes(codec, ids[starts[gap.first - MARGIN] : starts[gap.first]])
        context += _pitch_classes(
            codec, ids[starts[gap.last + 1] : starts[min(gap.last + 1 + MARGIN, len(starts) - 1)]]
        )
        own = _pitch_classes(codec, fill)
        norm = np.linalg.norm(own) * np.linalg.norm(context)
        likeness.append(float(own @ context / norm) if norm else 0.0)
    return {"density_step": float(np.mean(steps)), "pitch_class_likeness": float(np.mean(likeness))}


def infill_lines(result: dict) -> list[str]:
    free, ctrl, real = result["free"], result["controlled"], result["real"]
    return [
        f"infill: {result['gaps']} gaps of {result['bars']} bars; {result['fills_cut_by_length']} fills cut by length",
        f"controls: density NRMSE {ctrl['density_nrmse']:.3f} with them, {free['density_nrmse']:.3f} without; "
        f"polyphony (min, max) exact {ctrl['polyphony_exact']:.0%} with, {free['polyphony_exact']:.0%} without; "
        f"they move a bar's notes by {result['density_change_by_controls']:.2f} on average",
        f"joins: density step {free['join']['density_step']:.2f} notes (real {real['join']['density_step']:.2f}); "
        f"pitch-class likeness to the bars around {free['join']['pitch_class_likeness']:.3f} "
        f"(real {real['join']['pitch_class_likeness']:.3f})",
    ]
