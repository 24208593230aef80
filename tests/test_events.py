"""Event-token models of MIDI on real files: the tokenizer's round trip, training on POP909, sampling from the
checkpoint alone (and from its exported folder), and bad input as one line."""

import csv
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import symusic
import torch

from lm_music.checkpoints import PRETRAINED_DIR
from lm_music.errors import UserError
from lm_music.export import export
from lm_music.tasks.events import mirex
from lm_music.tasks.events.codec import EventCodec, make_tokenizer, read_score, tokenizer_params
from lm_music.tasks.events.datamodule import EventDataModule
from lm_music.tasks.events.sampler import EventSampler
from tests.conftest import TINY_EVENTS, TINY_TRANSFORMER, data_path, run_script, sample_run, train_run

POP909 = data_path("midi/pop909")


def note_table(score: symusic.Score) -> np.ndarray:
    """(onset in beats, pitch, duration in beats, velocity) of every note."""
    tpq = score.ticks_per_quarter
    rows = [
        (n.time / tpq, n.pitch, n.duration / tpq, n.velocity) for track in score.tracks for n in track.notes
    ]
    return np.array(rows)


def overlapped(table: np.ndarray) -> np.ndarray:
    """Which notes another note of the same key overlaps in time (rows as `note_table` gives them)."""
    start, end, key = table[:, 0], table[:, 0] + table[:, 2], table[:, 1]
    overlaps = (
        (key[:, None] == key[None, :]) & (start[:, None] < end[None, :]) & (start[None, :] < end[:, None])
    )
    np.fill_diagonal(overlaps, False)
    return overlaps.any(axis=1)


@pytest.mark.parametrize("tokenizer", ["REMI", "TSD", "MIDILike"])
def test_a_pop909_song_survives_the_tokenizer_within_its_resolution(tokenizer):
    score = read_score(POP909 / "test" / "011.mid")  # MELODY, BRIDGE and PIANO merged onto one piano
    assert len(score.tracks) == 1
    codec = EventCodec.of(make_tokenizer(tokenizer, num_velocities=32, beat_res={"0_4": 8, "4_12": 4}))
    decoded, dropped = codec.decode(codec.encode(score))
    assert dropped == 0 and codec.error_rate(codec.encode(score)) == 0
    before, after = note_table(score), note_table(decoded)
    assert len(before) == len(after) > 1000
    # Compared key by key, in time: quantising keeps the order of one key's notes.
    before, after = (table[np.lexsort((table[:, 0], table[:, 1]))] for table in (before, after))
    assert np.abs(before[:, 0] - after[:, 0]).max() <= 1 / 16 + 1e-9
    assert (before[:, 1] == after[:, 1]).all()
    # Durations up to 4 beats at 8 positions a beat: MidiTok snaps onset and offset, so within one position.
    # MIDILike ends a note with a NoteOff of its key, not a duration: where notes of one key overlap (merged
    # tracks doubling a key) the decoder pairs the offs with other ons, so only the notes no other note of
    # their key overlaps keep their own durations (1607 of this song's 1894).
    short = before[:, 2] < 4
    if tokenizer == "MIDILike":
        short &= ~overlapped(before)
        assert short.sum() > 0.8 * len(before)
    assert np.abs(before[short, 2] - after[short, 2]).max() <= 1 / 8 + 1e-9
    assert np.abs(before[:, 3] - after[:, 3]).max() <= 128 / 32  # velocity within its bin
    assert len(np.unique(after[:, 3])) > 10


def test_a_draw_with_no_note_decodes_to_a_valid_midi_file(tmp_path):
    """A model may draw bars, a tempo and a change of metre but no note (the shipped pop909 model did, at
    seed 0 and 16 tokens): the file written must still be valid MIDI, its tempo and metres in place."""
    codec = EventCodec.of(make_tokenizer("REMI"))
    tempo = next(t for t in codec.tokenizer.vocab if t.startswith("Tempo_"))
    tokens = ["Bar_None", "TimeSig_4/4", "Position_0", tempo, "Bar_None", "TimeSig_4/4", "Bar_None"]
    tokens += ["TimeSig_3/4", "Position_2", "Pitch_60"]  # a pitch with no velocity: no note
    score, _ = codec.decode([codec.tokenizer.vocab[t] for t in tokens])
    assert score.note_num() == 0
    path = tmp_path / "silent.mid"
    score.dump_midi(str(path))
    read = pretty_midi.PrettyMIDI(str(path))  # raised "largest tick of 268435458" when the file was corrupt
    assert [(s.numerator, s.denominator) for s in read.time_signature_changes] == [(4, 4), (3, 4)]
    assert read.get_tempo_changes()[0].tolist() == [0.0]


@pytest.mark.parametrize("tokenizer", ["REMI", "TSD", "MIDILike"])
def test_draws_kept_to_the_grammar_have_no_grammar_error(tokenizer):
    """An untrained model draws tokens at random: unmasked, most break MidiTok's grammar; masked, none does
    (MIDILike: but for the notes still sounding where the draw is cut off)."""
    torch.manual_seed(0)
    params = tokenizer_params(make_tokenizer(tokenizer))
    sampler = EventSampler(params, arch="rnn", hidden_size=32, embedding_dim=16, num_layers=1)

    def draws(grammar: bool) -> list[list[int]]:
        return sampler.sample(8, 300, generator=torch.Generator().manual_seed(0), grammar=grammar)

    raw = draws(False)
    assert np.mean([sampler.codec.error_rate(row) for row in raw]) > 0.3
    kept = draws(True)
    if tokenizer == "MIDILike":  # close the notes the cut left sounding: then no error is left
        vocab = sampler.codec.tokenizer.vocab
        for row in kept:
            tokens = sampler.codec.tokens(row)
            if tokens[-1].startswith("NoteOn"):
                row.append(vocab["Velocity_63"])
            row.append(vocab["TimeShift_1.0.8"])  # the type a NoteOff may follow
            for on in (token for token in vocab if token.startswith("NoteOn_")):
                off = on.replace("NoteOn", "NoteOff")
                row += [vocab[off]] * (tokens.count(on) - tokens.count(off))
    assert all(sampler.codec.error_rate(row) == 0 for row in kept)
    assert all(sampler.codec.decode(row)[1] == 0 for row in kept)  # nothing for the decoder to drop
    assert all(sampler.codec.decode(row)[0].note_num() > 0 for row in kept)


@pytest.mark.parametrize("tokenizer", ["REMI", "TSD", "MIDILike"])
def test_shifting_the_ids_is_tokenizing_the_transposed_song(tokenizer):
    score = read_score(POP909 / "test" / "011.mid")
    codec = EventCodec.of(make_tokenizer(tokenizer))
    table, ids = codec.transposition(5), codec.encode(score)
    for k in (-5, -1, 3, 5):
        assert np.array_equal(table[5 + k][ids].numpy(), codec.encode(score.shift_pitch(k)))
    kind = "NoteOn" if tokenizer == "MIDILike" else "Pitch"
    top = codec.tokenizer.vocab[f"{kind}_{codec.tokenizer.config.pitch_range[1]}"]
    assert table[6, top] == -1 and table[4, top] >= 0  # off the tokenizer's range above, a key below


def test_training_batches_are_transposed_within_the_keyboard_the_same_again_at_that_step(tmp_path):
    import pytorch_lightning as pl

    (tmp_path / "train").mkdir()
    (tmp_path / "valid").mkdir()
    for file in sorted((POP909 / "train").glob("*.mid"))[:3]:
        shutil.copy(file, tmp_path / "train")
    shutil.copy(POP909 / "test" / "011.mid", tmp_path / "valid")
    module = EventDataModule(
        str(tmp_path), cache_dir=str(tmp_path / "cache"), max_len=256, batch_size=8, augment_transpose=6
    )
    module.setup()
    module.trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    batch = next(iter(module.train_dataloader()))
    original = batch["sequences"]
    module.trainer.training = True
    moved = module.on_after_batch_transfer(dict(batch), 0)["sequences"]
    assert torch.equal(module.on_after_batch_transfer(dict(batch), 0)["sequences"], moved)  # seeded by step
    shifts = []
    for row, before in zip(moved, original):
        matches = [k for k in range(-6, 7) if torch.equal(module.transposition[6 + k][before], row)]
        assert matches, "a row is not a transposition of its window"
        shifts.append(matches[0])
    assert len(set(shifts)) > 2  # drawn for each window, not one shift for all
    tokens = module.codec.tokens(moved.flatten().tolist())
    pitches = [int(t.split("_")[1]) for t in tokens if t.startswith("Pitch_")]
    assert min(pitches) >= 21 and max(pitches) <= 109
    module.trainer.training = False  # validation and test: the data as it is
    assert torch.equal(module.on_after_batch_transfer(dict(batch), 0)["sequences"], original)


TINY_LSTM = ["model=event_rnn", "model.hidden_size=32", "model.embedding_dim=16", "model.num_layers=1"]


def train_tiny(root, model: list[str]) -> tuple:
    """A tiny model trained 40 steps on 4 / 3 / 3 POP909 songs; its data folder and token cache are removed
    after, so what samples from it has nothing but the checkpoint. Returns the run, its metrics, the splits'
    totals (tokens, notes, seconds) and the vocabulary size."""
    data = root / "pop909"
    for split, count in (("train", 4), ("valid", 3), ("test", 3)):
        (data / split).mkdir(parents=True)
        for file in sorted((POP909 / split).glob("*.mid"))[:count]:
            shutil.copy(file, data / split)
    overrides = [*TINY_EVENTS, *model, f"data.path={data}", f"paths.data_dir={root / 'cache'}"]
    metrics = train_run(root / "run", [*overrides, "trainer.max_steps=40", "trainer.val_check_interval=10"])
    module = EventDataModule(str(data), cache_dir=str(root / "cache" / "cache"), max_len=128)
    module.setup()
    shutil.rmtree(data)
    shutil.rmtree(root / "cache")
    return root / "run", metrics, module.counts, len(module.codec)


def test_bpe_is_trained_on_the_training_pieces_and_travels_with_the_tokens(tmp_path):
    for split, count in (("train", 3), ("valid", 1)):
        (tmp_path / split).mkdir()
        for file in sorted((POP909 / split).glob("*.mid"))[:count]:
            shutil.copy(file, tmp_path / split)
    plain = EventDataModule(str(tmp_path), tokenizer="TSD", cache_dir=str(tmp_path / "cache"))
    bpe = EventDataModule(
        str(tmp_path), tokenizer="TSD", bpe_vocab_size=600, cache_dir=str(tmp_path / "cache")
    )
    plain.setup()
    bpe.setup()
    assert len(bpe.codec) == 600 and bpe.counts["valid"]["notes"] == plain.counts["valid"]["notes"]
    # merged tokens: fewer of them
    assert bpe.counts["valid"]["tokens"] < 0.8 * plain.counts["valid"]["tokens"]
    # The parameters in the checkpoint rebuild the same BPE: the validation piece decodes to its notes.
    codec = EventCodec(bpe.model_kwargs()["tokenizer"])
    decoded, dropped = codec.decode(bpe.datasets["valid"].sequences[0])
    assert dropped == 0 and decoded.note_num() == bpe.counts["valid"]["notes"]
    with pytest.raises(UserError, match="cannot shift the pitches of BPE tokens"):
        codec.transposition(2)
    with pytest.raises(UserError, match="data.bpe_vocab_size=100 must be larger than the base vocabulary"):
        EventDataModule(str(tmp_path), bpe_vocab_size=100, cache_dir=str(tmp_path / "c2")).setup()


@pytest.fixture(scope="module")
def events_run(tmp_path_factory):
    """The experiment's Transformer, tiny (validation pieces are read whole through its sliding window)."""
    return train_tiny(tmp_path_factory.mktemp("events"), TINY_TRANSFORMER)


@pytest.fixture(scope="module")
def events_lstm_run(tmp_path_factory):
    """The LSTM variant (model=event_rnn), tiny."""
    return train_tiny(tmp_path_factory.mktemp("events_lstm"), TINY_LSTM)


def test_a_few_steps_on_pop909_lower_the_validation_loss(events_run):
    run, metrics, counts, vocab_size = events_run
    with open(run / "csv" / "metrics.csv") as f:
        losses = [float(row["val/loss"]) for row in csv.DictReader(f) if row["val/loss"]]
    assert len(losses) >= 4 and losses[-1] < losses[0]  # four validations (10 steps apart), the loss falling
    assert metrics["val/nll_token"] == pytest.approx(metrics["val/loss"])
    assert metrics["val/loss"] < 0.9 * math.log(vocab_size)  # a uniform guess costs ln(V) nats a token
    # The split's totals: bits per note and nats per second are its NLL over its notes and seconds.
    val = counts["valid"]
    total_nats = metrics["val/loss"] * val["tokens"]
    assert metrics["val/bits_per_note"] == pytest.approx(total_nats / math.log(2) / val["notes"], rel=1e-6)
    assert metrics["val/nats_per_second"] == pytest.approx(total_nats / val["seconds"], rel=1e-6)
    assert metrics["test/bits_per_note"] > 0
    with open(run / "csv" / "metrics.csv") as f:
        judged = [row for row in csv.DictReader(f) if row.get("samples/grammar_errors")]
    assert judged and 0 <= float(judged[-1]["samples/grammar_errors"]) <= 1  # callbacks.sample_quality


def test_the_page_draws_an_event_model_as_sample_py_does(events_run, tmp_path):
    from lm_music.app import Page

    ckpt = str(events_run[0] / "checkpoints" / "last.ckpt")
    outputs = Page(events_run[0], 1).generate(ckpt, length=64, num_samples=1, seed=2, top_k=20)
    shown = [o["value"] for o in outputs[:-1] if isinstance(o, dict) and o.get("visible") and o.get("value")]
    assert [str(v).rsplit(".", 1)[-1] for v in shown] == ["png", "wav", "mid"]
    written = sample_run(
        [f"ckpt_path={ckpt}", "length=64", "num_samples=1", "seed=2", "top_k=20", f"out_dir={tmp_path}"]
    )
    assert Path(shown[2]).read_bytes() == written[0].read_bytes()


def velocities(path) -> set[int]:
    return {n.velocity for track in symusic.Score(str(path)).tracks for n in track.notes}


def test_the_checkpoint_alone_samples_midi_with_dynamics_the_same_for_a_seed(events_lstm_run, tmp_path):
    run = events_lstm_run[0]  # its data folder and token cache are gone: the tokenizer is in the checkpoint
    args = [f"ckpt_path={run}/checkpoints/last.ckpt", "num_samples=2", "length=300", "seed=3", "audio=false"]
    script = run_script("sample.py", *args, f"out_dir={tmp_path}/a")  # as a user runs it, once
    assert script.returncode == 0, script.stderr
    assert "ungrammatical tokens dropped" in script.stdout and "decoding dropped" in script.stdout
    sample_run([*args, f"out_dir={tmp_path}/b"])
    for name in ("sample_000.mid", "sample_001.mid", "sample_000.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (
        len(velocities(tmp_path / "a" / "sample_000.mid") | velocities(tmp_path / "a" / "sample_001.mid")) > 1
    )

    export(run / "checkpoints" / "last.ckpt", tmp_path / "x")
    assert json.loads((tmp_path / "x" / "config.json").read_text())["hyper_parameters"]["tokenizer"]
    sample_run([*args, f"ckpt_path={tmp_path}/x", f"out_dir={tmp_path}/c"])
    assert (tmp_path / "c" / "sample_000.mid").read_bytes() == (
        tmp_path / "a" / "sample_000.mid"
    ).read_bytes()

    prime = POP909 / "test" / "011.mid"
    written = sample_run([*args, f"prime_midi={prime}", "prime_tokens=64", f"out_dir={tmp_path}/p"])
    opening = [n.pitch for n in symusic.Score(str(written[0])).tracks[0].notes[:5]]
    assert opening == [n.pitch for n in read_score(prime).tracks[0].notes[:5]]  # it continues the prime
    not_midi = data_path("midi/unreadable/test-not-a-midi-file.mid")
    with pytest.raises(UserError, match=f"^cannot read MIDI file {not_midi} \\(MiniMidi: [^\n]*\\)$"):
        sample_run([*args, f"prime_midi={not_midi}", f"out_dir={tmp_path}/q"])


NOTE_LESS = [
    data_path("midi/odd_but_valid/note_seq/example_event_order.mid"),
    data_path("midi/odd_but_valid/tonejs/beat.mid"),
]
UNREADABLE = [
    f for f in sorted((data_path("midi/unreadable")).glob("*.mid")) if "sysex" not in f.name
]  # symusic
# reads the file whose running status a SysEx breaks (pretty_midi cannot): four are unreadable to both


def test_unreadable_and_note_less_files_are_skipped_and_named(tmp_path, caplog):
    for file in [*sorted((POP909 / "train").glob("*.mid"))[:5], *UNREADABLE, *NOTE_LESS]:
        shutil.copy(file, tmp_path)
    module = EventDataModule(
        str(tmp_path), cache_dir=str(tmp_path / "cache"), valid_fraction=0.2, test_fraction=0.2
    )
    with caplog.at_level(logging.WARNING):
        module.setup()
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skipped) == 6 and all(
        any(f.name in line for line in skipped) for f in [*UNREADABLE, *NOTE_LESS]
    )
    assert sum("no notes" in line for line in skipped) == 2
    assert [len(module.names[s]) for s in ("train", "valid", "test")] == [3, 1, 1]


def test_a_folder_with_no_readable_file_and_an_unknown_tokenizer_are_one_line(tmp_path):
    for file in [*UNREADABLE, *NOTE_LESS]:
        shutil.copy(file, tmp_path)
    with pytest.raises(
        UserError, match="no readable MIDI file with notes in .*: found 6 .mid/.midi files, skipped 6"
    ):
        EventDataModule(str(tmp_path), cache_dir=str(tmp_path / "cache")).setup()
    with pytest.raises(
        UserError, match="data.tokenizer must be one of REMI, TSD, MIDILike, Structured, got 'Nope'"
    ):
        EventDataModule(str(POP909), tokenizer="Nope")
    result = run_script(
        "train.py", "experiment=pop909_events", "data.tokenizer=Nope", f"hydra.run.dir={tmp_path}/run"
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "data.tokenizer must be one of REMI, TSD" in result.stderr.strip().splitlines()[-1]


def test_the_evaluator_judges_decoded_samples_with_the_expressive_features(events_lstm_run, tmp_path):
    from lm_music.evaluate import evaluate, options

    for file in sorted((POP909 / "valid").glob("*.mid"))[:4]:
        shutil.copy(file, tmp_path)
    args = [f"ckpt_path={events_lstm_run[0]}/checkpoints/last.ckpt", "num_samples=4", "length=64"]
    result = evaluate(options([*args, f"reference_dir={tmp_path}", f"out_dir={tmp_path}/out"]))
    assert result["task"] == "events" and (tmp_path / "out" / "evaluation.json").is_file()
    features = result["features"]
    for name in ("velocity_spread", "off_grid_onsets", "grammar_errors", "polyphony", "in_scale_rate"):
        assert len(features["samples"][name]) == 4 and len(features["reference"][name]) == 4
    assert features["reference"]["grammar_errors"] == [0.0] * 4  # real pieces are the tokenizer's own
    assert min(features["reference"]["velocity_spread"]) > 5  # POP909 is played, not sequenced
    assert max(features["floor"]["grammar_errors"]) > 0.1  # independent tokens break the grammar


def test_a_mirex_prompt_round_trips_and_its_continuation_is_written_in_the_format(tmp_path):
    """The first 5 bars of a POP909 song as a MIREX 2025 prompt: read back and through the shipped model's
    tokenizer it is the same notes at the same sixteenths; `sample.py prime_json=` continues it and writes
    each continuation's bars 6-17 in the format."""
    prompt = mirex.notes_in(read_score(POP909 / "test" / "011.mid"), 0, mirex.PROMPT_END)
    file = tmp_path / "prompt.json"
    file.write_text(json.dumps({"prompt": prompt}))
    assert mirex.notes_in(mirex.read_prompt(file), 0, mirex.PROMPT_END) == prompt
    shipped = json.loads((PRETRAINED_DIR / "pop909" / "config.json").read_text())
    codec = EventCodec(shipped["hyper_parameters"]["tokenizer"])
    decoded, dropped = codec.decode(codec.encode(mirex.read_prompt(file)))
    assert dropped == 0 and mirex.notes_in(decoded, 0, mirex.PROMPT_END) == prompt

    out = tmp_path / "out"
    args = ["pretrained=pop909", f"prime_json={file}", "num_samples=2", "length=400", "seed=0", "audio=false"]
    written = sample_run([*args, "threads=1", f"out_dir={out}"])
    assert out / "sample_001.json" in written
    for i in range(2):
        continued = json.loads((out / f"sample_{i:03d}.json").read_text())["generation"]
        assert continued and all(n["start"] >= 80 and n["start"] + n["duration"] <= 272 for n in continued)
        drawn = symusic.Score(str(out / f"sample_{i:03d}.mid"))
        assert mirex.notes_in(drawn, 0, mirex.PROMPT_END)[: len(prompt) // 2] == prompt[: len(prompt) // 2]
        # the same notes as the MIDI file (its overlapping notes of one key may pair their offs otherwise)
        assert [(n["start"], n["pitch"]) for n in mirex.notes_in(drawn)] == [
            (n["start"], n["pitch"]) for n in continued
        ]

    bad = tmp_path / "bad.json"
    for body, message in (
        ("{", "is not JSON"),
        ('{"notes": []}', 'has no "prompt" list'),
        ('{"prompt": [{"start": 90, "pitch": 60, "duration": 4}]}', "note 0 .* is outside the prompt"),
        ('{"prompt": [{"start": 0, "pitch": 60}]}', "note 0 must have integer start, pitch and duration"),
    ):
        bad.write_text(body)
        with pytest.raises(UserError, match=message):
            mirex.read_prompt(bad)
    with pytest.raises(
        UserError, match="prime_json= is for event-token .* models; this model does not take it"
    ):
        sample_run(["pretrained=jsb_chorales", f"prime_json={file}", f"out_dir={tmp_path}/jsb"])


def test_trim_lead_in_cuts_whole_empty_bars_and_keeps_tempo_and_timing():
    from lm_music.tasks.events.codec import trim_lead_in

    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 90.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("Piano", 0)
    bar = 4 * 480
    track.notes.extend([symusic.Note(3 * bar + 240, 480, 60, 80), symusic.Note(4 * bar, 480, 64, 70)])
    track.pedals.append(symusic.Pedal(3 * bar, 960))
    score.tracks.append(track)
    trimmed = trim_lead_in(score)
    assert [(n.time, n.pitch, n.velocity) for n in trimmed.tracks[0].notes] == [(240, 60, 80), (bar, 64, 70)]
    assert [(t.time, round(t.qpm, 3)) for t in trimmed.tempos] == [(0, 90.0)]  # symusic keeps microseconds
    assert [(s.time, s.numerator) for s in trimmed.time_signatures] == [(0, 4)]
    assert [(p.time, p.duration) for p in trimmed.tracks[0].pedals] == [(0, 960)]
    assert trim_lead_in(trimmed).tracks[0].notes[0].time == 240  # from its first bar already: as it is
