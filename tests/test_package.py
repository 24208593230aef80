"""The installed package, not the checkout: a wheel built from the repository and installed apart finds its
sample defaults and its shipped models when run from outside the repository."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, data_path


def run(args: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_an_installed_wheel_draws_and_judges_from_outside_the_repository(tmp_path):
    pytest.importorskip(
        "setuptools", reason="building the wheel offline needs setuptools: pip install setuptools"
    )
    wheels, site, outside = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # before the checkout's editable install on sys.path
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT], outside, env)
    (wheel,) = wheels.glob("lm_music-*.whl")
    run([*pip, "install", "--no-deps", "--target", site, wheel], outside, env)
    where = run([sys.executable, "-c", "import lm_music; print(lm_music.__file__)"], outside, env).stdout
    assert Path(where.strip()).is_relative_to(site)

    usage = run([sys.executable, "-m", "lm_music.evaluate", "--help"], outside, env).stdout
    assert "usage: python -m lm_music.evaluate" in usage
    tunes = outside / "tunes"
    tunes.mkdir()
    for name in ("ashover12.mid", "ashover15.mid", "hpps45.mid", "hpps52.mid"):
        (tunes / name).symlink_to(data_path("midi/nottingham_jukedeck/test") / name)
    args = ["pretrained=bach_chorales", "num_samples=2", "length=16", "threads=1", f"reference_dir={tunes}"]
    run([sys.executable, "-m", "lm_music.evaluate", *args, "out_dir=judged"], outside, env)
    judged = json.loads((outside / "judged" / "evaluation.json").read_text())
    assert judged["model"] == "pretrained:bach_chorales" and "temperature 1.0" in judged["samples"]
    assert not (outside / "conf").exists()  # nothing of the checkout was needed or made

    # the installed package's default audio is the SoundFont piano, from pip-installed parts only
    render = (
        "import pretty_midi; from lm_music.audio import AudioRenderer; from lm_music.options import sample_options;"
        "pm = pretty_midi.PrettyMIDI(); piano = pretty_midi.Instrument(0);"
        "piano.notes.append(pretty_midi.Note(90, 60, 0.0, 1.0)); pm.instruments.append(piano);"
        "renderer = AudioRenderer.from_options(sample_options().audio); audio = renderer.render(pm);"
        "print(renderer.description, len(audio), renderer.sample_rate)"
    )
    heard = run([sys.executable, "-c", render], outside, env).stdout.split()
    assert " ".join(heard[:-2]) == "the SoundFont TimGM6mb.sf2 (lm_music's sampler)"
    assert int(heard[-2]) >= int(heard[-1])  # a second of sound at least
