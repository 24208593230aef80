"""The shipped models: sampling with no arguments, the listing, and each benchmark model re-scoring to the
figure on its card (any drift in data reading or metric code fails here)."""

import json

import numpy as np
import pretty_midi
import pytest
import scipy.io.wavfile
import symusic

from lm_music.cache import OPTIONS as CACHE_OPTIONS
from lm_music.cards import card_command
from lm_music.checkpoints import PRETRAINED_DIR, pretrained_names
from tests.conftest import ROOT, data_path, run_script, train_run


def test_sample_py_with_no_arguments_writes_a_chorale(tmp_path):
    result = run_script(str(ROOT / "sample.py"), "num_samples=2", "length=32", "threads=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for i in range(2):
        midi = tmp_path / "samples" / f"sample_{i:03d}.mid"
        assert len(pretty_midi.PrettyMIDI(str(midi)).instruments[0].notes) > 0
        assert midi.with_suffix(".png").stat().st_size > 1000
        rate, audio = scipy.io.wavfile.read(midi.with_suffix(".wav"))
        assert rate == 22050 and len(audio) > rate


def test_the_shipped_lyrics_models_write_lyrics_with_no_data_and_no_training(tmp_path):
    """In a folder with no data: the unconditional model continues its prime, the conditional one writes as
    the author asked for, and an author it does not know is one line naming those it does."""
    plain = run_script(
        str(ROOT / "sample.py"),
        "pretrained=lyrics",
        "prime=The ",
        "length=120",
        "num_samples=2",
        cwd=tmp_path,
    )
    assert plain.returncode == 0, plain.stderr
    texts = (tmp_path / "samples" / "samples.txt").read_text()
    assert texts.count("=== sample") == 2 and "\nThe " in texts and len(texts) > 200
    authors = json.loads((PRETRAINED_DIR / "lyrics_authors" / "config.json").read_text())
    known = authors["hyper_parameters"]["artists"]
    assert "Fanny Crosby" in known and "Other authors" in known
    by_author = run_script(
        str(ROOT / "sample.py"),
        "pretrained=lyrics_authors",
        "artist=Fanny Crosby",
        "length=80",
        "num_samples=1",
        "out_dir=crosby",
        cwd=tmp_path,
    )
    assert by_author.returncode == 0, by_author.stderr
    assert "=== sample 0 (Fanny Crosby) ===" in (tmp_path / "crosby" / "samples.txt").read_text()
    unknown = run_script(str(ROOT / "sample.py"), "pretrained=lyrics_authors", "artist=Fanny", cwd=tmp_path)
    lines = unknown.stderr.strip().splitlines()
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "unknown artist 'Fanny'" in lines[-1] and "Fanny Crosby" in lines[-1]


def test_the_shipped_event_model_plays_midi_with_dynamics_with_no_data(tmp_path):
    """`pretrained=pop909` in a folder with no data: MIDI with more than one velocity, its picture and its
    SoundFont audio sounding from the first second, the same bytes for the same seed (the tokenizer travels
    in config.json). Seed 2 drew an empty piece before the model's `min_length` default (issue 43)."""
    args = ["pretrained=pop909", "num_samples=4", "length=256", "seed=2", "threads=1"]
    first = run_script(str(ROOT / "sample.py"), *args, "out_dir=a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "ungrammatical tokens dropped" in first.stdout
    assert "audio rendered with the SoundFont TimGM6mb.sf2" in first.stdout
    again = run_script(str(ROOT / "sample.py"), *args, "out_dir=b", "audio=false", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    velocities, notes = set(), []
    for i in range(4):
        midi = tmp_path / "a" / f"sample_{i:03d}.mid"
        assert midi.read_bytes() == (tmp_path / "b" / midi.name).read_bytes()
        score = symusic.Score(str(midi))
        notes.append(score.note_num())
        velocities |= {n.velocity for track in score.tracks for n in track.notes}
        assert midi.with_suffix(".png").stat().st_size > 1000
        rate, audio = scipy.io.wavfile.read(midi.with_suffix(".wav"))
        assert (np.abs(audio[:rate]) > 0.01 * 32767).any()  # no second of silence first
    assert min(notes) >= 10 and len(velocities) > 3


def test_pretrained_list_shows_every_shipped_model_with_its_summary(tmp_path):
    result = run_script(str(ROOT / "sample.py"), "pretrained=list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "samples").exists()
    shown = result.stdout
    assert pretrained_names() == [
        "bach_chorales",
        "jsb_chorales",
        "lyrics",
        "lyrics_authors",
        "nottingham",
        "piano_midi",
        "pop909",
        "pop909_infill",
    ]
    for name in pretrained_names():
        summary = json.loads((PRETRAINED_DIR / name / "config.json").read_text())["summary"]
        assert f"{name} " in shown and summary in shown


PD_SONGS = "lyrics/public_domain_songs.csv"
# How each shipped model is re-scored: its experiment and the data settings its card's command gives.
RESCORE = {
    "jsb_chorales": ["experiment=jsb_chorales", f"data.path={data_path('polyphonic/JSB_Chorales.mat')}"],
    "nottingham": ["experiment=nottingham", f"data.path={data_path('polyphonic/Nottingham.mat')}"],
    "piano_midi": ["experiment=piano_midi", f"data.path={data_path('polyphonic/Piano_midi.mat')}"],
    "bach_chorales": ["experiment=bach_chorales"],
    "lyrics": ["experiment=lyrics"],
    "lyrics_authors": ["experiment=lyrics_conditional", "data.min_songs=10", "data.others=Other authors"],
    "pop909": ["experiment=pop909_events", f"data.path={data_path('midi/pop909')}"],
    "pop909_infill": ["experiment=pop909_infill", f"data.path={data_path('midi/pop909')}"],
}
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "name",
    [
        "jsb_chorales",
        pytest.param("nottingham", marks=SLOW),
        pytest.param("piano_midi", marks=SLOW),
        pytest.param("bach_chorales", marks=SLOW),  # music21's chorales are built first
        pytest.param("lyrics", marks=SLOW),
        pytest.param("lyrics_authors", marks=SLOW),
        pytest.param("pop909", marks=SLOW),  # 86 songs scored whole, in chunks past the context
        pytest.param("pop909_infill", marks=SLOW),
    ],
)
def test_each_shipped_model_rescores_to_its_card(name, tmp_path, chorale_cache):
    """`train=false ckpt_path=pretrained:NAME` on the model's test split gives the card's figures (1e-3), those
    through the continuous cache of its decoding defaults included (`test/NAME_cache`)."""
    overrides = list(RESCORE[name])
    if name.startswith("lyrics"):
        overrides.append(f"data.path={data_path(PD_SONGS)}")
    if name == "bach_chorales":
        overrides.append(f"paths.data_dir={chorale_cache}")
    config = json.loads((PRETRAINED_DIR / name / "config.json").read_text())
    overrides += [f"{k}={v}" for k, v in config.get("decoding", {}).items() if k in CACHE_OPTIONS]
    metrics = train_run(
        tmp_path, [*overrides, "train=false", f"ckpt_path=pretrained:{name}", "threads=1", "logger=csv"]
    )
    reported = [k for k in config["metrics"] if k.startswith("test/")]
    assert reported
    for key in reported:
        assert metrics[key] == pytest.approx(config["metrics"][key], abs=1e-3), key
    card = (PRETRAINED_DIR / name / "README.md").read_text()
    assert f"| {reported[0]} | {config['metrics'][reported[0]]:.4f} |" in card


def test_cards_give_the_command_a_user_types_without_paths_of_the_training_machine():
    overrides = [
        "experiment=jsb_chorales",
        "data.path=/home/me/data/JSB_Chorales.mat",
        "paths.log_dir=/srv/runs",
    ]
    overrides += ["hydra.run.dir=/srv/runs/x", "threads=1", "ckpt_path=last"]  # a resumed run
    assert (
        card_command(overrides)
        == "python train.py experiment=jsb_chorales data.path=PATH/JSB_Chorales.mat threads=1"
    )
    tuned = ["init_from=/srv/runs/x/checkpoints/last.ckpt", "init_from=pretrained:pop909", "init_from=/m/f"]
    assert card_command(tuned) == (
        "python train.py init_from=RUN/checkpoints/last.ckpt init_from=pretrained:pop909 init_from=PATH/f"
    )
    spaced = ["experiment=lyrics_conditional", "data.others=Other authors"]
    assert card_command(spaced) == "python train.py experiment=lyrics_conditional 'data.others=Other authors'"
    for name in pretrained_names():
        command = json.loads((PRETRAINED_DIR / name / "config.json").read_text())["training_command"]
        assert f"`{command}`" in (PRETRAINED_DIR / name / "README.md").read_text()
        for word in command.split()[2:]:
            key, _, value = word.partition("=")
            assert not key.startswith(("paths.", "hydra.")), (name, word)
            assert key != "data.path" or value.startswith("PATH/"), (name, word)


# Where each shipped model's data is (the card's data.path=PATH/NAME), by its file name.
DATA_OF = {
    "JSB_Chorales.mat": "polyphonic/JSB_Chorales.mat",
    "Nottingham.mat": "polyphonic/Nottingham.mat",
    "Piano_midi.mat": "polyphonic/Piano_midi.mat",
    "public_domain_songs.csv": "lyrics/public_domain_songs.csv",
    "pop909": "midi/pop909",
}


def card_samples_args(name: str, out) -> tuple[list[str], dict]:
    """The card's "Samples" command for shipped model `name`, its data placeholder mapped to the test data."""
    judged = json.loads((PRETRAINED_DIR / name / "config.json").read_text())["samples"]
    args = [
        f"pretrained={name}",
        *(f"{k}={judged[k]}" for k in ("num_samples", "length", "seed")),
        f"out_dir={out}",
    ]
    if judged.get("data"):
        file = judged["data"].removeprefix("PATH/")
        args.append(f"data.path={data_path(DATA_OF[file])}")
    return args, judged


@pytest.mark.parametrize(
    "name",
    [
        "jsb_chorales",
        pytest.param("nottingham", marks=pytest.mark.slow),
        pytest.param("piano_midi", marks=pytest.mark.slow),
        pytest.param("bach_chorales", marks=pytest.mark.slow),  # music21's chorales are built first
        pytest.param("lyrics", marks=pytest.mark.slow),
        pytest.param("lyrics_authors", marks=pytest.mark.slow),
        pytest.param("pop909", marks=pytest.mark.slow),
        pytest.param("pop909_infill", marks=pytest.mark.slow),
    ],
)
def test_each_cards_samples_section_is_what_its_command_gives(name, tmp_path):
    from lm_music.evaluate import evaluate, options

    args, judged = card_samples_args(name, tmp_path)
    result = evaluate(options([*args, "threads=1"]))
    for anchor in ("model", "ceiling", "floor"):
        assert result["summary"]["mean_oa"][anchor] == pytest.approx(judged["mean_oa"][anchor], abs=1e-6)
    for feature, figures in judged["features"].items():
        assert result["comparisons"]["model"][feature]["mean_samples"] == pytest.approx(
            figures["samples"], abs=1e-6
        )
    card = (PRETRAINED_DIR / name / "README.md").read_text()
    assert f"**{judged['mean_oa']['model']:.3f}**" in card and "## Samples" in card
    if judged.get("infill"):  # a model trained to infill: its "Infilling" section, by its command
        infill = judged["infill"]
        args = [a for a in args if not a.startswith(("length=", "out_dir="))]
        extra = [f"infill={infill['infill']}", f"length={infill['length']}", f"out_dir={tmp_path / 'infill'}"]
        result = evaluate(options([*args, *extra, "threads=1"]))
        for anchor in ("model", "ceiling", "floor"):
            assert result["summary"]["mean_oa"][anchor] == pytest.approx(infill["mean_oa"][anchor], abs=1e-6)
        for kind in ("free", "controlled"):
            assert result["infill"][kind]["density_nrmse"] == pytest.approx(
                infill[kind]["density_nrmse"], abs=1e-6
            )
        assert f"**{infill['mean_oa']['model']:.3f}**" in card and "## Infilling" in card


def test_the_shipped_infill_model_rewrites_bars_as_asked_with_no_data(tmp_path):
    """`pretrained=pop909_infill` in a folder with no data: bars 5-8 of a test song rewritten, every other note
    the file's own, and the density control obeyed: asking for 2 notes a bar gives fewer new notes than 14."""
    from lm_music.generation import load_model
    from lm_music.tasks.events.infill import bar_ticks, grid_step, in_gap

    song = sorted((data_path("midi/pop909") / "test").glob("*.mid"))[1]
    original = symusic.Score(str(song))
    ticks = bar_ticks(original, 9)
    begin, end = ticks[4], ticks[8]
    step = grid_step(original, load_model("pretrained:pop909_infill", "cpu").sampler.codec.tokenizer)
    counts = {}
    for density in (2, 14):
        args = [
            "pretrained=pop909_infill",
            f"prime_midi={song}",
            "infill_bars=5-8",
            f"controls.note_density={density}",
        ]
        done = run_script(
            str(ROOT / "sample.py"), *args, "num_samples=4", "threads=1", f"out_dir=d{density}", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        counts[density] = []
        for i in range(4):
            piece = symusic.Score(str(tmp_path / f"d{density}" / f"sample_{i:03d}.mid"))
            for mine, theirs in zip(piece.tracks, original.tracks):
                assert list(mine.notes) == [n for n in theirs.notes if not in_gap(n.time, begin, end, step)]
            assert all(begin <= n.time < end for n in piece.tracks[-1].notes)
            counts[density].append(piece.tracks[-1].note_num())
    assert sum(counts[2]) < sum(counts[14])
