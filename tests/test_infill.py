"""Bar infilling with attribute controls on real POP909 songs: the bar layout, the controls after each Bar,
the training windows, the splice that keeps every other note of the file, a model trained to infill sampled
through sample.py, the vocabulary grown by a fine-tune, and bad input as one line."""

import shutil

import numpy as np
import pytest
import symusic
import torch

from lm_music.checkpoints import load_checkpoint, network_weights, rows_by_name, sampler_from_checkpoint
from lm_music.data.batching import windows
from lm_music.errors import UserError
from lm_music.tasks.events.codec import (
    EventCodec,
    make_tokenizer,
    read_score,
    with_controls,
)
from lm_music.tasks.events.infill import (
    CONTEXT_AFTER,
    CONTEXT_BEFORE,
    BarControl,
    Gap,
    bar_starts,
    bar_ticks,
    control_ids,
    fill_of,
    grid_step,
    in_gap,
    layout,
    splice,
    training_examples,
)
from tests.conftest import data_path, sample_run

POP909 = data_path("midi/pop909")
SONG = sorted((POP909 / "test").glob("*.mid"))[0]


@pytest.fixture(scope="module")
def codec() -> EventCodec:
    return EventCodec.of(make_tokenizer(controls=["note_density", "polyphony"], infilling=True))


def names(codec: EventCodec, ids) -> list[str]:
    table = codec.names()
    return [table[int(i)] for i in ids]


def test_controls_follow_each_bar_token_and_leave_the_music_as_it_was(codec):
    score = read_score(SONG)
    plain, controlled = codec.encode(score), codec.encode(score, controls=True)
    tokens = names(codec, controlled)
    controls = [i for i, t in enumerate(tokens) if t.startswith("AC")]
    assert len(controls) > 300  # three a bar with notes: polyphony min, max, density
    assert all(tokens[i - 1] == "Bar_None" or tokens[i - 1].startswith("AC") for i in controls)
    assert [t for t in tokens if not t.startswith("AC")] == names(codec, plain)
    assert codec.decode(controlled)[0].note_num() == codec.decode(plain)[0].note_num()


def test_the_layout_cuts_whole_bars_and_asks_for_them_after_the_music_around_them(codec):
    ids = codec.encode(read_score(SONG), eos=False)
    starts = bar_starts(ids, codec.BAR)
    gap = Gap.parse("5-8")
    prime, target = layout(ids, starts, gap, (codec.INFILL, codec.FILL_START, codec.FILL_END))
    assert (gap.first, gap.last) == (4, 7) and str(gap) == "5-8"
    assert target.tolist() == ids[starts[4] : starts[8]].tolist()  # the gap: four whole bars
    assert names(codec, target).count("Bar_None") == 4
    marks = np.flatnonzero(prime == codec.INFILL)
    assert marks.tolist() == list(range(marks[0], marks[0] + 4)) and prime[-1] == codec.FILL_START
    # before the marks: the song from its start (bars 1-4 fit in the context); after them: whole bars from bar 9
    assert prime[: marks[0]].tolist() == ids[: starts[4]].tolist()
    after = prime[marks[-1] + 1 : -1]
    assert after.tolist() == ids[starts[8] : starts[8] + len(after)].tolist() and after[0] == codec.BAR
    assert starts[8] + len(after) in starts and len(after) <= CONTEXT_AFTER
    # far into the song the context is cut to whole bars within its budget
    later = Gap(100, 101)
    prime, _ = layout(ids, starts, later, (codec.INFILL, codec.FILL_START, codec.FILL_END))
    before = prime[: np.flatnonzero(prime == codec.INFILL)[0]]
    assert before[0] == codec.BAR and len(before) <= CONTEXT_BEFORE


def test_training_windows_keep_controls_at_random_rates_and_a_share_ask_for_a_gap(codec):
    cut = [
        w
        for f in sorted((POP909 / "train").glob("*.mid"))[:6]
        for w in windows(codec.encode(read_score(f), controls=True), 512)
    ]
    examples = training_examples(cut, codec, 0.5, 8, seed=3)
    assert [e.tolist() for e in examples] == [
        e.tolist() for e in training_examples(cut, codec, 0.5, 8, seed=3)
    ]
    infilled = [e for e in examples if codec.FILL_START in e]
    assert 0.3 < len(infilled) / len(examples) < 0.7
    for example in infilled:
        tokens = names(codec, example)
        fill = tokens[tokens.index("FillBar_Start") + 1 :]
        assert fill[0] == "Bar_None" and fill[-1] == "FillBar_End"
        assert tokens.count("Infill_Bar") == fill.count("Bar_None") <= 8  # one mark per bar asked for
    kept = [
        np.isin(e, sorted(codec.control_ids)).sum() / max(1, np.isin(w, sorted(codec.control_ids)).sum())
        for e, w in zip(examples, cut)
        if codec.FILL_START not in e
    ]
    assert min(kept) < 0.3 and max(kept) > 0.7  # some windows keep few controls, some most
    plain = training_examples(cut, codec, 0.0, 8, seed=3)
    assert not any(codec.FILL_START in e for e in plain)


def test_the_splice_keeps_every_note_outside_the_gap_as_the_file_has_it(codec):
    song = POP909 / "test" / "545.mid"  # in 1/4, with downbeats played a tick before the beat
    original = symusic.Score(str(song))  # its three tracks, as in the file
    ticks, step = bar_ticks(original, 9), grid_step(original, codec.tokenizer)
    begin, end = ticks[4], ticks[8]
    fill = symusic.Score(original.ticks_per_quarter)
    track = symusic.Track("fill", 0)
    track.notes = [symusic.Note(t, 100, 60 + t % 12, 70) for t in range(0, end - begin + 500, 120)]
    fill.tracks.append(track)
    spliced = splice(original, fill, begin, end, step)

    def outside(score) -> list:
        return sorted(
            (i, n.time, n.duration, n.pitch, n.velocity)
            for i, t in enumerate(score.tracks[: len(original.tracks)])
            for n in t.notes
            if not in_gap(n.time, begin, end, step)
        )

    assert outside(spliced) == outside(original) and len(outside(original)) > 1000
    assert not [n for t in spliced.tracks[:-1] for n in t.notes if in_gap(n.time, begin, end, step)]
    # bar 9's downbeat, a tick early, is bar 9's: kept, as the tokens the model read had it
    early = [n for t in spliced.tracks[:-1] for n in t.notes if end - step / 2 < n.time < end]
    assert early
    new = spliced.tracks[-1].notes
    assert new and all(begin <= n.time < end for n in new)  # the fill's notes past the gap are not taken
    assert spliced.tempos == original.tempos and spliced.time_signatures == original.time_signatures
    # on the tokenizer's grid, every bar of every test song holds the notes its tokens hold
    names = codec.names()
    for file in sorted((POP909 / "test").glob("*.mid"))[:20]:
        score = read_score(file)
        ids = codec.encode(score, eos=False)
        starts = [*bar_starts(ids, codec.BAR), len(ids)]
        ticks, step = bar_ticks(score, len(starts)), grid_step(score, codec.tokenizer)
        onsets = [n.time for t in score.tracks for n in t.notes]
        for k, (a, b) in enumerate(zip(starts, starts[1:])):
            tokens = sum(names[i].startswith("Pitch_") for i in ids[a:b])
            assert tokens == sum(in_gap(t, ticks[k], ticks[k + 1], step) for t in onsets), (file.name, k)


def test_the_fill_control_gives_the_controls_after_each_bar_and_ends_after_the_last(infill_run):
    sampler = sampler_from_checkpoint(load_checkpoint(str(infill_run[0])), "cpu")
    codec = sampler.codec
    ids = codec.encode(read_score(SONG), eos=False)
    starts = bar_starts(ids, codec.BAR)
    prime, _ = layout(ids, starts, Gap(4, 6), (codec.INFILL, codec.FILL_START, codec.FILL_END))
    controls = control_ids(codec, {"note_density": [3, 5, 7], "polyphony": "1-3"}, 3)
    assert names(codec, controls[1]) == [
        "ACBarOnsetPolyphonyMin_1",
        "ACBarOnsetPolyphonyMax_3",
        "ACBarNoteDensity_5",
    ]
    control = BarControl(codec, controls, 4, codec.grammar(prime.tolist(), 4), gap=3)
    rows = sampler.draw_ids(
        prime.tolist(), 4, 600, generator=torch.Generator().manual_seed(1), processor=control
    )
    for row in rows:  # three bars, each with the controls asked for and no other
        fill = names(codec, fill_of(row, codec, 3))
        bars = [i for i, t in enumerate(fill) if t == "Bar_None"]
        assert sum(t.startswith("AC") for t in fill) == 9
        assert len(bars) == 3 and bars[0] == 0
        for bar, density in zip(bars, (3, 5, 7)):
            assert fill[bar + 1 : bar + 4] == [
                "ACBarOnsetPolyphonyMin_1",
                "ACBarOnsetPolyphonyMax_3",
                f"ACBarNoteDensity_{density}",
            ]
    assert control.finished() and max(map(len, rows)) < 600  # the loop stopped once every row had ended


def test_a_fine_tune_grows_the_vocabulary_each_row_following_its_token():
    shipped = load_checkpoint("pretrained:pop909")
    old = EventCodec(shipped["hyper_parameters"]["tokenizer"])
    new = EventCodec(with_controls(old.params, ["note_density", "polyphony"], True))
    assert len(new) == len(old) + 34 and set(old.names()) < set(new.names())
    assert new.names().index("Pitch_60") != old.names().index("Pitch_60")  # the marks come first: ids move
    weights = network_weights(shipped)
    fresh = {k: torch.zeros(len(new), *v.shape[1:]) if len(v) == len(old) else v for k, v in weights.items()}
    grown = rows_by_name(weights, fresh, old.names(), new.names())
    embedding = "embedding.weight"
    for token in ("Pitch_60", "Bar_None", "Velocity_63", "EOS_None"):
        assert torch.equal(
            grown[embedding][new.names().index(token)], weights[embedding][old.names().index(token)]
        )
    assert not grown[embedding][new.FILL_START].any()  # a new token keeps the fresh row
    with pytest.raises(UserError, match="data.tracks=merge"):
        with_controls({**old.params, "config": {**old.params["config"], "use_programs": True}}, [], True)


def test_sample_py_rewrites_bars_5_to_8_and_keeps_every_other_note_of_the_song(infill_run, tmp_path):
    ckpt, metrics = infill_run
    assert metrics["test/bits_per_note"] > 0  # scored as a continuation model, controls left out
    written = sample_run(
        [
            f"ckpt_path={ckpt}",
            f"prime_midi={SONG}",
            "infill_bars=5-8",
            "controls.note_density=4",
            "num_samples=2",
            "length=400",
            f"out_dir={tmp_path}",
            "seed=1",
        ]
    )
    assert sorted(p.name for p in written) == [
        f"sample_00{i}.{e}" for i in range(2) for e in ("mid", "png", "wav")
    ]
    original = symusic.Score(str(SONG))
    ticks = bar_ticks(original, 9)
    begin, end = ticks[4], ticks[8]
    step = grid_step(original, sampler_from_checkpoint(load_checkpoint(str(ckpt)), "cpu").codec.tokenizer)
    for path in (tmp_path / "sample_000.mid", tmp_path / "sample_001.mid"):
        piece = symusic.Score(str(path))
        assert piece.ticks_per_quarter == original.ticks_per_quarter
        for mine, theirs in zip(piece.tracks, original.tracks):  # every note outside bars 5-8, identical
            assert list(mine.notes) == [n for n in theirs.notes if not in_gap(n.time, begin, end, step)]
        assert piece.tracks[-1].name == "Infilled (lm_music)"
        assert all(begin <= n.time < end for n in piece.tracks[-1].notes)


def test_controls_steer_every_bar_of_a_continuation_too(infill_run, tmp_path):
    from lm_music.generation import draw, load_model
    from lm_music.options import sample_options

    model = load_model(str(infill_run[0]), "cpu")
    codec = model.sampler.codec
    options = sample_options()
    options.merge_with(
        {"num_samples": 2, "length": 300, "audio": False, "controls": {"note_density": 5, "polyphony": "1-2"}}
    )
    samples = draw(model, options)
    asked = names(codec, control_ids(codec, {"note_density": 5, "polyphony": "1-2"}, 1)[0])
    for ids in samples.ids:
        tokens = names(codec, ids[1:])
        bars = [i for i, t in enumerate(tokens) if t == "Bar_None"]
        assert len(bars) >= 2
        for bar in bars:  # the controls asked for after every Bar drawn, and no other
            assert tokens[bar + 1 : bar + 4] == asked[: len(tokens) - bar - 1]
        assert sum(t.startswith("AC") for t in tokens) <= 3 * len(bars)
    with pytest.raises(UserError, match="trained without attribute controls"):
        options.merge_with({"controls": {"note_density": 5}})
        draw(load_model("pretrained:pop909", "cpu"), options)


def test_a_mirex_prompt_has_its_bars_infilled_too(infill_run, tmp_path):
    import json

    prompt = {"prompt": [{"start": 4 * i, "pitch": 60 + i % 12, "duration": 4} for i in range(20)]}
    (tmp_path / "prompt.json").write_text(json.dumps(prompt))
    out = tmp_path / "out"
    args = [f"ckpt_path={infill_run[0]}", f"prime_json={tmp_path / 'prompt.json'}", "infill_bars=2-3"]
    sample_run([*args, "num_samples=1", "length=300", f"out_dir={out}"])
    piece = symusic.Score(str(out / "sample_000.mid"))
    ticks = bar_ticks(piece, 4)
    kept = sorted(n.time for n in piece.tracks[0].notes)
    assert kept and not any(ticks[1] <= t < ticks[3] for t in kept)  # the prompt's bars 2-3 are the model's
    assert len(kept) == 20 - 8  # the other three bars keep their 4 quarter notes each


def test_bad_infill_input_is_one_line(infill_run, tmp_path):
    ckpt, _ = infill_run
    base = [f"ckpt_path={ckpt}", f"prime_midi={SONG}", "num_samples=1", "length=50", f"out_dir={tmp_path}"]
    cases = [
        (["infill_bars=8-5"], "infill_bars must be FIRST-LAST with 1 <= FIRST <= LAST"),
        (["infill_bars=0-2"], "infill_bars must be FIRST-LAST"),
        (["infill_bars=400-410"], "bars: infill_bars=400-410 asks for bars past its end"),
        (["infill_bars=5-8", "controls.polyphony=5-2"], "controls.polyphony must be N or MIN-MAX"),
        (["infill_bars=5-8", "controls.note_density=many"], "controls.note_density must be a whole number"),
        (["infill_bars=5-8", "controls.note_density=[1,2]"], "gives 2 values for 4 bars"),
        (["infill_bars=5-8", "controls.polyphony=9"], "outside the model's range"),
        (["infill_bars=5-8", "prime_midi=null", "prime_json=null"], "give it as prime_midi=SONG.mid"),
    ]
    for extra, message in cases:
        with pytest.raises(UserError, match=message.replace("[", r"\[")):
            sample_run([*base, *extra])
    with pytest.raises(UserError, match="needs a model trained to infill"):
        sample_run(
            [
                "pretrained=pop909",
                f"prime_midi={SONG}",
                "infill_bars=5-8",
                "num_samples=1",
                f"out_dir={tmp_path}",
            ]
        )
    with pytest.raises(
        UserError, match=r"infill_bars= is for infilling event-token \(e.g. pretrained=pop909_infill\) models"
    ):
        sample_run(["pretrained=nottingham", "infill_bars=5-8", "num_samples=1", f"out_dir={tmp_path}"])
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_the_evaluator_judges_filled_gaps_against_the_real_bars_and_the_controls(infill_run, tmp_path):
    from lm_music.evaluate import evaluate, options

    ckpt, _ = infill_run
    for split, count in (("train", 2), ("valid", 3), ("test", 3)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for file in sorted((POP909 / split).glob("*.mid"))[:count]:
            shutil.copy(file, tmp_path / "data" / split)
    args = [f"ckpt_path={ckpt}", "infill=2", "num_samples=3", "length=300", f"data.path={tmp_path / 'data'}"]
    result = evaluate(
        options([*args, f"data.cache_dir={tmp_path / 'cache'}", f"out_dir={tmp_path / 'out'}", "threads=1"])
    )
    assert (tmp_path / "out" / "evaluation.json").is_file()
    assert "real 2-bar gaps of 3 songs of the test split" in result["sets"]["reference"]
    mean = result["summary"]["mean_oa"]
    assert mean["floor"] < mean["ceiling"] and 0 <= mean["model"] <= 1
    judged = result["infill"]
    assert judged["gaps"] == 3 and judged["bars"] == 2
    for kind in ("free", "controlled"):
        assert judged[kind]["density_nrmse"] >= 0 and 0 <= judged[kind]["polyphony_exact"] <= 1
    # the real bars join the music around them as real music does: a pitch-class likeness well above chance
    assert judged["real"]["join"]["pitch_class_likeness"] > 0.5
    assert any(line.startswith("controls: density NRMSE") for line in result["lines"])
    with pytest.raises(UserError, match="judges a model trained to infill"):
        evaluate(
            options(
                ["pretrained=pop909", "infill=4", f"data.path={tmp_path / 'data'}", f"out_dir={tmp_path}"]
            )
        )


def test_an_unknown_control_or_option_on_the_command_line_is_one_line():
    from tests.conftest import run_script

    done = run_script("sample.py", "pretrained=pop909", "infill_bars=5-8", "controls.tempo=3")
    assert done.returncode and done.stderr.strip().splitlines() == [
        "error: unknown option controls.tempo; the options of controls are controls.note_density, controls.polyphony"
    ]
    done = run_script("sample.py", "lenght=3")
    assert done.returncode and done.stderr.strip().startswith("error: unknown option lenght; the options are")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_excerpt_heard_holds_no_note_past_its_end():
    from lm_music.tasks.events.infill import excerpt

    song = symusic.Score(str(SONG))
    ticks = bar_ticks(song, 13)
    cut = excerpt(song, ticks[4], ticks[12])
    notes = [n for t in cut.tracks for n in t.notes]
    kept = [n for t in song.tracks for n in t.notes if ticks[4] <= n.time < ticks[12]]
    assert len(notes) == len(kept) > 0 and min(n.time for n in notes) >= 0
    assert max(n.time + n.duration for n in notes) <= ticks[12] - ticks[4]
    assert any(n.time + n.duration > ticks[12] for n in kept)  # the file holds some past it
