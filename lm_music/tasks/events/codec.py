"""The MIDI codec of event-token models: a MidiTok tokenizer between MIDI (symusic Scores) and token ids.

As the character vocabulary is the codec of lyrics, this is the codec of MIDI: its full parameters (BPE
merges included, `MusicTokenizer.to_dict`) are a plain dict that travels in the checkpoint, so sampling needs
no data. MidiTok tokenizes, decodes, trains BPE and counts grammar errors; symusic reads and writes MIDI.
This module knows nothing of Lightning or of datasets.
"""

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lm_music.errors import UserError
from lm_music.midi import HIGHEST_PITCH, LOWEST_PITCH, UnreadableMidi

log = logging.getLogger(__name__)

# MidiTok's tokenizers whose tokens form one sequence over one vocabulary (CPWord and Octuple stack several
# vocabularies per step, which a next-token model over one vocabulary cannot predict).
TOKENIZERS = ("REMI", "TSD", "MIDILike", "Structured")
TRACKS = ("merge", "programs")  # every pitched track onto one piano, or each track's program kept as tokens
SPECIAL = ("PAD_None", "BOS_None", "EOS_None")
# The marks of the infilling layout (MMM's, Ens & Pasquier 2020, which MidiTok describes but whose vocabulary
# has none): a bar cut out of the piece, and the start and end of the bars asked for after it (`infill.py`).
INFILL = ("Infill_Bar", "FillBar_Start", "FillBar_End")
# Bar attribute controls (MidiTok's `attribute_controls`), by the names of `data.controls` and `controls.*`:
# the tokenizer settings that add each. A control's tokens follow the bar's Bar token (`with_controls_after_bar`).
CONTROLS = {
    "note_density": {"ac_note_density_bar": True, "ac_note_density_bar_max": 18},
    "polyphony": {"ac_polyphony_bar": True, "ac_polyphony_min": 1, "ac_polyphony_max": 6},
}
PITCHED = (
    "Pitch",
    "NoteOn",
    "NoteOff",
)  # the token types that carry a pitch (PitchDrum is a drum, not a key)


def make_tokenizer(
    tokenizer: str = "REMI",
    num_velocities: int = 32,
    beat_res: dict[str, int] | None = None,
    use_sustain_pedals: bool = True,
    use_tempos: bool = True,
    tracks: str = "merge",
    controls: Sequence[str] = (),
    infilling: bool = False,
):
    """A fresh MidiTok tokenizer from the config's settings (`data.tokenizer`, `data.num_velocities`, ...).

    `beat_res` maps beat ranges as MidiTok writes them ("0_4": 8: 8 positions a beat for the first 4 beats
    of a duration or time shift); an unknown tokenizer or track mode is one line listing the valid ones.
    `controls` (names of `CONTROLS`) and `infilling` (the `INFILL` marks) add their tokens after the others.
    """
    import miditok

    if tokenizer not in TOKENIZERS:
        raise UserError(f"data.tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    if tracks not in TRACKS:
        raise UserError(f"data.tracks must be one of {', '.join(TRACKS)}, got {tracks!r}")
    if not 1 <= num_velocities <= 127:
        raise UserError(f"data.num_velocities must be 1 to 127, got {num_velocities}")
    resolution = {}
    for span, positions in (beat_res or {"0_4": 8, "4_12": 4}).items():
        try:
            start, end = (int(b) for b in str(span).split("_"))
        except ValueError:
            raise UserError(f"data.beat_res keys are beat ranges like 0_4, got {span!r}") from None
        resolution[(start, end)] = int(positions)
    settings = {
        "pitch_range": (LOWEST_PITCH, HIGHEST_PITCH + 1),
        "beat_res": resolution,
        "num_velocities": num_velocities,
        "special_tokens": list(SPECIAL),
        "use_sustain_pedals": use_sustain_pedals,
        "use_tempos": use_tempos,
        "use_programs": tracks == "programs",
        "use_pitchdrum_tokens": tracks == "programs",
    }
    config = miditok.TokenizerConfig(**settings | control_settings(controls, infilling and tokenizer))
    return getattr(miditok, tokenizer)(config)


def control_settings(controls: Sequence[str], infilling: str | bool) -> dict:
    """The TokenizerConfig settings that add `controls` and, when `infilling` names a bar tokenizer, the
    infilling marks: one line for an unknown control or a tokenizer without bars."""
    settings = {}
    for name in controls:
        if name not in CONTROLS:
            raise UserError(
                f"data.controls: unknown control {name!r}; the controls are {', '.join(CONTROLS)}"
            )
        settings |= CONTROLS[name]
    if infilling and infilling != "REMI":
        raise UserError(f"data.infill_share needs data.tokenizer=REMI (its Bar tokens), got {infilling}")
    if infilling:
        settings["special_tokens"] = list(SPECIAL) + list(INFILL)
    return settings


def with_controls(params: dict, controls: Sequence[str], infilling: bool) -> dict:
    """A checkpoint's tokenizer parameters with `controls` and the infilling marks added (fine-tuning a model
    to infill, `init_from=`): the tokens it has keep their names; the model's rows follow them by name."""
    config = dict(params["config"])
    if infilling and config.get("use_programs"):
        raise UserError("infilling needs one merged piano (data.tracks=merge)")
    added = control_settings(controls, infilling and params.get("tokenization"))
    if "special_tokens" in added:
        added["special_tokens"] = list(config["special_tokens"]) + [
            t for t in INFILL if t not in config["special_tokens"]
        ]
    return {**params, "config": config | added}


def tokenizer_params(tokenizer) -> dict:
    """The tokenizer's full parameters (BPE merges included) as plain JSON values, for a checkpoint."""
    return json.loads(json.dumps(tokenizer.to_dict()))


def load_tokenizer(params: dict):
    """The tokenizer of `tokenizer_params` (MidiTok loads parameters from a file only)."""
    import miditok

    name = params.get("tokenization")
    if name not in TOKENIZERS:
        raise UserError(f"the model's tokenizer {name!r} is not one of {', '.join(TOKENIZERS)}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokenizer.json"
        path.write_text(json.dumps(params))
        return getattr(miditok, name)(params=path)


def read_score(path: str | Path, tracks: str = "merge"):
    """A MIDI file as a symusic Score, its pitched tracks merged onto one piano (program 0, drums left out)
    unless `tracks` is "programs"; an UnreadableMidi naming why when symusic cannot parse it."""
    import symusic
    from miditok.utils import merge_tracks

    try:
        score = symusic.Score(str(path))
    except Exception as error:  # symusic raises RuntimeError with its parser's reason
        raise UnreadableMidi(path, str(error).removesuffix(": iostream error")) from None
    if tracks == "merge":
        score.tracks = [t for t in score.tracks if not t.is_drum and t.note_num()]
        if score.tracks:
            merge_tracks(score)
            score.tracks[0].program, score.tracks[0].name = 0, "Piano"
    return score


def trim_lead_in(score):
    """The Score from its first bar with a note: the empty bars before it cut, the tempo, time and key
    signatures in force there kept at time 0. POP909's files open with up to 28 s of rest (aligned to their
    recordings), from which a model learns to open with empty bars, then to end the piece there."""
    import symusic

    starts = [int(t.notes.numpy()["time"].min()) for t in score.tracks if t.note_num()]
    signature = score.time_signatures[0] if len(score.time_signatures) else None
    bar = score.ticks_per_quarter * 4 * (signature.numerator / signature.denominator if signature else 1)
    shift = int(min(starts) // bar * bar) if starts else 0
    if shift <= 0:
        return score
    trimmed = score.copy()

    def from_shift(events, make):
        before = [e for e in events if e.time <= shift]
        return ([make(before[-1])] if before else []) + [e for e in events if e.time > shift]

    trimmed.tempos = from_shift(score.tempos, lambda e: symusic.Tempo(shift, e.qpm))
    trimmed.time_signatures = from_shift(
        score.time_signatures, lambda e: symusic.TimeSignature(shift, e.numerator, e.denominator)
    )
    trimmed.key_signatures = from_shift(
        score.key_signatures, lambda e: symusic.KeySignature(shift, e.key, e.tonality)
    )
    for track in trimmed.tracks:
        track.pedals = [p for p in track.pedals if p.time >= shift]
        track.controls = [c for c in track.controls if c.time >= shift]
    return trimmed.shift_time(-shift)


def note_count(score) -> int:
    """Pitched notes on the 88 keys: what `bits per note` divides by, the same whatever the tokenizer."""
    total = 0
    for track in score.tracks:
        if not track.is_drum and track.note_num():
            pitches = track.notes.numpy()["pitch"]
            total += int(((pitches >= LOWEST_PITCH) & (pitches <= HIGHEST_PITCH)).sum())
    return total


def read_notes(path: str | Path, tracks: str = "merge"):
    """`read_score`, or None for a file with no notes on the 88 keys (`midi_folder.read_folder`'s `read`)."""
    score = read_score(path, tracks)
    return score if note_count(score) else None


def seconds(score) -> float:
    """Seconds of music, to the last note-off (tempo events after the music do not count)."""
    timed = score.to("second")
    ends = [
        float((n["time"] + n["duration"]).max())
        for n in (t.notes.numpy() for t in timed.tracks if t.note_num())
    ]
    return max(ends, default=0.0)


def velocity_roll(score, frames_per_beat: int = 4) -> np.ndarray:
    """(T, 88) float roll in [0, 1] of a Score on a grid of `frames_per_beat` (16ths by default): each key's
    velocity / 127 while it sounds, so the picture's shading shows the dynamics (symusic's pianoroll)."""
    grid = score.resample(tpq=frames_per_beat, min_dur=1)
    roll = np.zeros((0, HIGHEST_PITCH + 1 - LOWEST_PITCH), dtype=np.float32)
    for track in grid.tracks:
        if track.is_drum or not track.note_num():
            continue
        keys = track.pianoroll(
            modes=["frame"], pitch_range=[LOWEST_PITCH, HIGHEST_PITCH + 1], encode_velocity=True
        )
        frames = keys[0].T.astype(np.float32) / 127.0
        if len(frames) > len(roll):
            roll = np.pad(roll, ((0, len(frames) - len(roll)), (0, 0)))
        roll[: len(frames)] = np.maximum(roll[: len(frames)], frames)
    return roll


def is_mark(token: str) -> bool:
    """Tokens that carry no music to decode: the special ids, the infilling marks, attribute controls."""
    return token.split("_")[0] in ("PAD", "BOS", "EOS", "MASK", "Infill", "FillBar") or token.startswith("AC")


class EventCodec:
    """MIDI <-> token ids through a MidiTok tokenizer: what `CharVocab` is to text."""

    def __init__(self, params: dict) -> None:
        self.params = params
        self.tokenizer = load_tokenizer(params)
        # named as CharVocab's, so the token models read both codecs alike
        self.PAD, self.BOS, self.EOS = (self.tokenizer[name] for name in SPECIAL)
        self.name = params["tokenization"]
        # how a MIDI file given to this model (a prime, a reference) is read: as its training data was
        self.tracks = "programs" if params.get("config", {}).get("use_programs") else "merge"
        vocab = self.tokenizer.vocab
        self.infilling = all(mark in vocab for mark in INFILL)
        self.INFILL, self.FILL_START, self.FILL_END = (vocab.get(mark, -1) for mark in INFILL)
        self.BAR = vocab.get("Bar_None", -1)
        self.separator = self.BAR if self.BAR >= 0 else None  # what ends a segment a refrain repeats: a bar
        config = params.get("config", {})
        # the controls this model knows (`CONTROLS`' names), and the ids of their tokens
        self.controls = [
            name
            for name, added in CONTROLS.items()
            if all(config.get(k) for k in added if k.endswith("_bar"))
        ]
        self.control_ids = {i for token, i in vocab.items() if token.startswith("AC")}

    @classmethod
    def of(cls, tokenizer) -> "EventCodec":
        """The codec of a tokenizer in memory (through its parameters, as a checkpoint rebuilds it)."""
        return cls(tokenizer_params(tokenizer))

    def __len__(self) -> int:
        """The vocabulary size (BPE tokens included): the token model's input and output size."""
        return len(self.tokenizer)

    def names(self) -> list[str]:
        """Each id's token (`Pitch_60`, ...; BPE ids by their merged bytes): what a fine-tune onto a larger
        vocabulary matches the rows of the model's embedding and head by."""
        names = [""] * len(self)
        for token, i in (self.tokenizer.vocab_model or self.tokenizer.vocab).items():
            names[i] = token
        return names

    def encode(self, score, bos: bool = True, eos: bool = True, controls: bool = False) -> np.ndarray:
        """Ids of a Score (BPE-encoded when the tokenizer is trained), with the start and end ids; `controls`:
        every bar's attribute-control tokens too, right after its Bar token."""
        indexes = None
        if controls and self.tokenizer.attribute_controls:
            from miditok.attribute_controls import create_random_ac_indexes

            indexes = create_random_ac_indexes(score, self.tokenizer.attribute_controls, 1.0, 1.0)
        sequences = self.tokenizer.encode(score, attribute_controls_indexes=indexes)
        if isinstance(sequences, list):  # one sequence per track: a merged score has one
            sequences = sequences[0] if sequences else None
        ids = list(sequences.ids) if sequences is not None else []
        if indexes is not None:
            ids = self.with_controls_after_bar(ids)
        return np.array([self.BOS] * bos + ids + [self.EOS] * eos, dtype=np.int32)

    def with_controls_after_bar(self, ids: list[int]) -> list[int]:
        """MidiTok writes a bar's controls after its time signature (and a tempo at its first position, then
        that position again); here they follow the Bar token at once, so that a sampler can give them as soon
        as a bar begins, and the rest is the sequence MidiTok writes without controls."""
        positions = {i for token, i in self.tokenizer.vocab.items() if token.startswith("Position_")}
        out: list[int] = []
        bar_at, position = None, None
        for i in ids:
            if i == self.BAR:
                bar_at, position = len(out) + 1, None
                out.append(i)
            elif i in self.control_ids and bar_at is not None:
                out.insert(bar_at, i)
                bar_at += 1
            elif i in positions and i == position:  # the position repeated after the controls
                continue
            else:
                position = i if i in positions else position
                out.append(i)
        return out

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """The base tokens (`Pitch_60`, `Velocity_63`, ...) of ids, BPE undone; special ids left out."""
        from miditok import TokSequence

        ids = [int(i) for i in ids if int(i) not in (self.PAD, self.BOS, self.EOS)]
        sequence = TokSequence(ids=ids, are_ids_encoded=self.tokenizer.is_trained)
        if self.tokenizer.is_trained:
            self.tokenizer.decode_token_ids(sequence)
        self.tokenizer.complete_sequence(sequence)
        return [t for t in sequence.tokens if not is_mark(t)]

    def grammatical(self, tokens: list[str]) -> list[str]:
        """The tokens whose type may follow the type of the token kept before it (MidiTok's graph of token
        types): what a model's ungrammatical draws are dropped to before decoding."""
        graph = self.tokenizer.tokens_types_graph
        kept, previous = [], None
        for token in tokens:
            kind = token.split("_")[0]
            if previous is None or kind in graph.get(previous, ()):
                kept.append(token)
                previous = kind
        return kept

    def decode(self, ids: Sequence[int]):
        """(Score, number of tokens dropped as ungrammatical) of drawn ids."""
        from miditok import TokSequence

        tokens = self.tokens(ids)
        kept = self.grammatical(tokens)
        sequence = TokSequence(tokens=kept)
        self.tokenizer.complete_sequence(sequence)
        score = self.tokenizer.decode([sequence] if not self.tokenizer.one_token_stream else sequence)
        if not score.tracks:
            # symusic 0.6 writes the tempos and time signatures of a score with no track unsorted (a tempo
            # at 0 after a time signature at 128 gets a negative delta: a corrupt file); an empty piano track
            # makes it sort them, and a draw with no note is still a valid, silent MIDI file
            import symusic

            score.tracks.append(symusic.Track("Piano", 0))
        return score, len(tokens) - len(kept)

    def error_rate(self, ids: Sequence[int]) -> float:
        """MidiTok's token-grammar error rate of ids (errors of type, time and duplicated notes per token)."""
        from miditok import TokSequence

        tokens = self.tokens(ids)
        return float(self.tokenizer.tokens_errors(TokSequence(tokens=tokens))) if tokens else 0.0

    def grammar(self, prime_ids: Sequence[int], batch: int) -> "GrammarMask | None":
        """The mask that keeps `batch` draws after `prime_ids` grammatical, or None for a BPE vocabulary (its
        merged tokens span several types; their draws are cleaned by `decode` instead)."""
        return None if self.tokenizer.is_trained else GrammarMask(self, prime_ids, batch)

    def transposition(self, semitones: int) -> torch.Tensor:
        """(2 * semitones + 1, V) ids: row `semitones + k` maps each id to the id of the same token `k`
        semitones higher (Pitch, NoteOn, NoteOff; -1 where that leaves the tokenizer's pitch range), every
        other id to itself.

        Shifting the ids of these tokenizers is tokenizing the transposed score (a test checks it), without
        tokenizing anew each batch. A BPE vocabulary merges pitches with other tokens: one line refuses it."""
        if self.tokenizer.is_trained:
            raise UserError(
                "data.augment_transpose cannot shift the pitches of BPE tokens: set data.bpe_vocab_size=null "
                "or data.augment_transpose=0"
            )
        vocab = self.tokenizer.vocab
        table = torch.arange(len(self)).repeat(2 * semitones + 1, 1)
        for token, i in vocab.items():
            kind, _, value = token.partition("_")
            if kind not in PITCHED:
                continue
            for k in range(-semitones, semitones + 1):
                table[semitones + k, i] = vocab.get(f"{kind}_{int(value) + k}", -1)
        return table

    def describe(self) -> str:
        """One line for logs and cards: the tokenizer, BPE size, velocity bins."""
        config = self.params.get("config", {})
        bpe = f", BPE {len(self)}" if self.tokenizer.is_trained else ""
        return f"{self.name}{bpe}, {config.get('num_velocities')} velocities"


class GrammarMask:
    """Which ids may come next in each of a batch of drawn sequences, so that the draws break none of the
    rules MidiTok's `tokens_errors` counts: a token's type must follow the type before it (its
    `tokens_types_graph`: a Pitch is followed by its Velocity, a Velocity by its Duration, ...), a Position
    rises within its bar, and (MIDILike) a NoteOff ends a sounding note and a piece ends with none sounding
    (duplicated notes are no error here: the tokenizers of `make_tokenizer` keep them). `mask(logits)` before
    each draw, `update(ids)` after it. MidiTok checks finished sequences only, so these rules are written out
    here; the one error this cannot prevent is a MIDILike note still sounding where the draw is cut off."""

    def __init__(self, codec: EventCodec, prime_ids: Sequence[int], batch: int) -> None:
        vocab = codec.tokenizer.vocab  # token -> id, no BPE
        names = [None] * len(codec)
        for token, i in vocab.items():
            names[i] = token
        kinds = [name.split("_")[0] for name in names]
        self.types = sorted(set(kinds))
        kind = torch.tensor([self.types.index(k) for k in kinds])
        graph = codec.tokenizer.tokens_types_graph
        # never drawn: the start, the padding, the marks of the infilling layout a sampler writes itself
        never = torch.tensor([k in ("PAD", "BOS") or n in INFILL[:2] for k, n in zip(kinds, names)])
        # attribute controls are outside MidiTok's graph: drawn right after a Bar, they leave the state as it was
        # (as do the infilling marks); a bar's controls may follow each other
        self.transparent = torch.tensor([k not in graph or k in ("Infill", "FillBar") for k in kinds])
        control = torch.tensor([k not in graph for k in kinds])
        # follows[t, j]: id j may come after a token of type t (the last row: after the start, anything)
        self.follows = torch.zeros(len(self.types) + 1, len(codec), dtype=torch.bool)
        for t, name in enumerate(self.types):
            self.follows[t] = torch.tensor([k in graph.get(name, ()) for k in kinds]) & ~control
            self.follows[t] |= control & (name == "Bar")
        self.follows[-1] = True
        self.follows &= ~never
        self.follows[:, codec.EOS] = True  # a draw may always end
        if codec.infilling:
            self.follows[:, codec.FILL_END] = (
                True  # as may the bars drawn to fill a gap (`infill.BarControl`)
            )
        self.kind, self.eos = kind, codec.EOS

        def values(prefix: str) -> torch.Tensor:
            return torch.tensor([int(n.split("_")[1]) if k == prefix else -1 for n, k in zip(names, kinds)])

        self.position, self.note_on, self.note_off = values("Position"), values("NoteOn"), values("NoteOff")
        self.bar = torch.tensor([k == "Bar" for k in kinds])
        self.previous = torch.full((batch,), len(self.types))  # the start row
        self.at = torch.full((batch,), -1)  # the position in the bar (-1: none yet)
        self.sounding = torch.zeros(batch, 128, dtype=torch.long)  # notes on per pitch (MIDILike)
        self.rows = torch.arange(batch)
        for i in prime_ids:
            self.update(torch.full((batch,), int(i)))

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (B, V) with the ids that cannot come next set to -inf."""
        allowed = self.follows[self.previous].clone()
        allowed &= (self.position[None] < 0) | (self.position[None] > self.at[:, None])
        off = self.note_off >= 0
        if off.any():  # a NoteOff only of a pitch that sounds
            sounding = self.sounding[:, self.note_off.clamp(min=0)] > 0
            allowed &= ~off[None] | sounding
            allowed[:, self.eos] &= self.sounding.sum(1) == 0  # no end while a note sounds
        return logits.masked_fill(~allowed.to(logits.device), float("-inf"))

    def update(self, ids: torch.Tensor) -> None:
        """The state after each row drew `ids` (B,)."""
        ids = ids.cpu()
        self.previous = torch.where(self.transparent[ids], self.previous, self.kind[ids])
        position = self.position[ids]
        self.at = torch.where(position >= 0, position, torch.where(self.bar[ids], -1, self.at))
        on, off = self.note_on[ids], self.note_off[ids]
        self.sounding[self.rows[on >= 0], on[on >= 0]] += 1
        self.sounding[self.rows[off >= 0], off[off >= 0]] -= 1
