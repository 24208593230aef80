"""The page (python -m lm_music.app) in a real browser: headless Chromium driven by Selenium against the app
served on 127.0.0.1, compared with what sample.py writes for the same settings."""

import io

import numpy as np
import pytest
import scipy.io.wavfile

from tests.browser import CHROMEDRIVER, CHROMIUM, ROOT, chromium, fetch, serve_app, type_into, wait_for
from tests.conftest import data_path, sample_run

SCREENSHOT = ROOT / "tests" / "screenshots" / "app.png"  # the README points here
pytestmark = [
    pytest.mark.slow,  # a browser and the app's server: `pytest -m slow`
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
    ),
]


@pytest.fixture(scope="module")
def app(lyrics_run, tmp_path_factory):
    with serve_app(tmp_path_factory.mktemp("app") / "app.log", f"runs_dir={lyrics_run}", "threads=1") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def test_the_shipped_bach_model_plays_in_the_page(app, browser, tmp_path):
    browser.get(app)
    wait_for(browser, "#summary", check=lambda e: "Bach chorales" in e.text)
    type_into(browser, "length", 64)
    type_into(browser, "seed", 7)
    browser.find_element("id", "generate").click()
    audio = [wait_for(browser, f"#audio_{i} a[href]") for i in range(2)]
    assert wait_for(browser, "#roll_1 img").get_attribute("src")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))

    cli = tmp_path / "cli"
    sample_run(
        ["pretrained=bach_chorales", "num_samples=2", "length=64", "seed=7", "threads=1", f"out_dir={cli}"]
    )
    for i in range(2):
        rate, page_audio = scipy.io.wavfile.read(io.BytesIO(fetch(audio[i].get_attribute("href"))))
        cli_rate, cli_audio = scipy.io.wavfile.read(cli / f"sample_{i:03d}.wav")
        assert rate == cli_rate == 22050
        # 64 quarter-note frames at 120 bpm: 32 s, less trailing silence, plus the last notes' release
        assert 16 * rate < len(page_audio) <= 34 * rate
        np.testing.assert_array_equal(page_audio, cli_audio)
        midi = wait_for(browser, f"#midi_{i} a[href]").get_attribute("href")
        assert fetch(midi) == (cli / f"sample_{i:03d}.mid").read_bytes()


def test_a_lyrics_checkpoint_in_the_page_writes_what_sample_py_writes(app, browser, lyrics_run, tmp_path):
    ckpt = lyrics_run / "checkpoints" / "last.ckpt"
    browser.get(app)
    wait_for(browser, "#summary", check=lambda e: "Bach chorales" in e.text)
    type_into(browser, "path", ckpt, enter=True)
    wait_for(browser, "#summary", check=lambda e: "lyrics" in e.text and "artists" in e.text)
    artist = wait_for(browser, "#artist input").get_attribute("value")
    assert artist
    type_into(browser, "prime", "Love")
    type_into(browser, "length", 80)
    type_into(browser, "seed", 3)
    browser.find_element("id", "generate").click()
    texts = wait_for(browser, "#texts textarea", check=lambda e: e.get_attribute("value")).get_attribute(
        "value"
    )

    cli = tmp_path / "cli"
    args = [f"ckpt_path={ckpt}", "num_samples=2", "length=80", "seed=3", "prime=Love", f"artist={artist}"]
    sample_run([*args, "threads=1", f"out_dir={cli}"])
    assert texts == (cli / "samples.txt").read_text(encoding="utf-8")
    blocks = [b for b in texts.split("=== sample ") if b]
    assert len(blocks) == 2 and all(b.split("===\n", 1)[1].startswith("Love") for b in blocks)

    type_into(browser, "artist", "Nobody Known")
    browser.find_element("id", "generate").click()
    wait_for(browser, "body", 60, check=lambda e: "unknown artist 'Nobody Known'" in e.text)


def test_bad_input_is_one_message_in_the_page_and_the_app_keeps_serving(app, browser, tmp_path):
    browser.get(app)
    wait_for(browser, "#summary", check=lambda e: "Bach chorales" in e.text)
    cases = [
        ("temperature", 0, "temperature must be > 0"),
        ("length", 100000, "length 100000 is more than this page draws"),
    ]
    for elem_id, value, message in cases:
        type_into(browser, elem_id, value)
        browser.find_element("id", "generate").click()
        wait_for(browser, "body", 60, check=lambda e, m=message: m in e.text)
        type_into(browser, elem_id, 1 if elem_id == "temperature" else 16)
    broken = data_path("midi/unreadable/test-not-a-midi-file.mid")
    wait_for(browser, "#prime_midi input[type=file]").send_keys(str(broken))
    browser.find_element("id", "generate").click()
    wait_for(browser, "body", 60, check=lambda e: "cannot read MIDI file" in e.text)
    missing = tmp_path / "missing.ckpt"
    type_into(browser, "path", missing, enter=True)
    wait_for(browser, "body", 60, check=lambda e: f"checkpoint not found: {missing}" in e.text)
    assert fetch(app)  # still serving


def body_text(browser) -> str:
    return browser.find_element("tag name", "body").text


def pick(browser, model: str, summary: str) -> None:
    """Load a model through the path box and wait for its summary."""
    type_into(browser, "path", model, enter=True)
    wait_for(browser, "#summary", check=lambda e: summary in e.text)


def test_a_bad_path_is_one_plain_warning_and_the_page_keeps_its_model(app, browser):
    """No "Error" badge stays on the summary, the prime box or the temperature after the message fades; the
    model box goes back to the model the summary describes; no internal error text reaches the user."""
    browser.get(app)
    wait_for(browser, "#summary", check=lambda e: "Bach chorales" in e.text)
    type_into(browser, "path", "/etc/passwd", enter=True)
    wait_for(browser, "body", 60, check=lambda e: "/etc/passwd is not a readable checkpoint" in e.text)
    assert "list index out of range" not in body_text(browser)
    wait_for(browser, "body", 60, check=lambda e: "is not a readable checkpoint" not in e.text)  # faded
    assert "Error" not in body_text(browser)
    assert wait_for(browser, "#model input").get_attribute("value") == "pretrained:bach_chorales"
    assert "Bach chorales" in wait_for(browser, "#summary").text
    assert wait_for(browser, "#temperature input").is_displayed()


def test_pop909_plays_a_soundfont_piano_from_its_first_note_and_shows_its_defaults(app, browser):
    browser.get(app)
    wait_for(browser, "#summary", check=lambda e: "Bach chorales" in e.text)
    pick(browser, "pretrained:pop909", "POP909")
    assert wait_for(browser, "#top_p input").get_attribute("value") == "0.95"  # the model's default, seen
    assert "Length (tokens)" in wait_for(browser, "#length").text
    assert "Number of samples" in wait_for(browser, "#num_samples").text
    type_into(browser, "length", 256)
    type_into(browser, "seed", 2)
    browser.find_element("id", "generate").click()
    wait_for(browser, "#generate", 10, check=lambda e: not e.is_enabled())  # no second request meanwhile
    audio = [wait_for(browser, f"#audio_{i} a[href]") for i in range(2)]
    wait_for(browser, "#generate", 60, check=lambda e: e.is_enabled())
    assert "Audio rendered with the SoundFont TimGM6mb.sf2" in wait_for(browser, "#rendered").text
    for player in audio:
        rate, pcm = scipy.io.wavfile.read(io.BytesIO(fetch(player.get_attribute("href"))))
        first = np.flatnonzero(np.abs(pcm) > 0.01 * 32767)
        assert len(first) and first[0] < rate  # sound within its first second
    name = wait_for(browser, "#midi_0 .stem")
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", name)
    with_default = fetch(wait_for(browser, "#midi_0 a[href]").get_attribute("href"))

    type_into(browser, "top_p", 1)  # off: a draw from the whole distribution, not the default 0.95
    browser.find_element("id", "generate").click()
    wait_for(browser, "#midi_0 a[href]", check=lambda e: fetch(e.get_attribute("href")) != with_default)
    for value, message in ((0, "top_p must be in (0, 1]"), (1000, "temperature must be at most 10")):
        field = "top_p" if value == 0 else "temperature"
        type_into(browser, field, value)
        browser.find_element("id", "generate").click()
        wait_for(browser, "body", 60, check=lambda e, m=message: m in e.text)
        wait_for(browser, "body", 60, check=lambda e, m=message: m not in e.text)  # faded
        assert "Error" not in body_text(browser)  # no badge left on the results
        assert browser.find_element("id", "generate").is_enabled()
        type_into(browser, field, 1)


def test_picking_another_model_clears_the_last_ones_results(app, browser):
    browser.get(app)
    wait_for(browser, "#summary", check=lambda e: "Bach chorales" in e.text)
    type_into(browser, "length", 16)
    browser.find_element("id", "generate").click()
    assert wait_for(browser, "#roll_0 img").is_displayed()
    pick(browser, "pretrained:nottingham", "Nottingham")
    wait_for(browser, "body", 30, check=lambda e: not e.find_elements("css selector", "#roll_0 img"))
    assert not browser.find_elements("css selector", "#audio_0 a[href]")
    assert not wait_for(browser, "#rendered").text


def test_the_picture_marks_where_the_prime_ends(app, browser):
    from PIL import Image

    browser.get(app)
    wait_for(browser, "#summary", check=lambda e: "Bach chorales" in e.text)
    type_into(browser, "length", 16)
    wait_for(browser, "#prime_midi input[type=file]").send_keys(
        str(data_path("midi/nottingham_jukedeck/test") / "ashover12.mid")
    )
    browser.find_element("id", "generate").click()
    picture = wait_for(browser, "#roll_0 img").get_attribute("src")
    pixels = np.asarray(Image.open(io.BytesIO(fetch(picture))).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 140) & (pixels[..., 2] < 140)
    assert red.sum() > 200  # the dashed line and its labels


def test_the_infill_tab_rewrites_the_bars_asked_for_as_sample_py_does(app, browser, infill_run, tmp_path):
    from PIL import Image

    ckpt, _ = infill_run
    song = sorted((data_path("midi/pop909") / "test").glob("*.mid"))[0]
    browser.get(app)
    wait_for(browser, "#summary", check=lambda e: "Bach chorales" in e.text)
    pick(browser, str(ckpt), "MIDI event tokens")
    wait_for(
        browser, "button", check=lambda e: e.text.strip() == "Infill" and e.get_attribute("role") == "tab"
    ).click()
    wait_for(browser, "#infill_song input[type=file]").send_keys(str(song))
    type_into(browser, "infill_bars", "5-8")
    type_into(browser, "infill_density", "4")
    type_into(browser, "infill_seed", 3)
    wait_for(browser, "#infill_song", 30, check=lambda e: song.stem in e.text and "KB" in e.text)  # uploaded
    browser.find_element("id", "infill").click()
    midi = [wait_for(browser, f"#infill_midi_{i} a[href]") for i in range(2)]
    assert "2 pieces with bars 5-8" in wait_for(browser, "#infilled", check=lambda e: e.text).text
    assert wait_for(browser, "#infill_audio_0 a[href]")
    picture = wait_for(browser, "#infill_roll_0 img").get_attribute("src")
    pixels = np.asarray(Image.open(io.BytesIO(fetch(picture))).convert("RGB")).astype(int)
    # the infilled bars: tab:red at 12 % over white
    shaded = (
        (pixels[..., 0] > 240) & (np.abs(pixels[..., 1] - 229) <= 4) & (np.abs(pixels[..., 2] - 229) <= 4)
    )
    assert shaded.sum() > 2000

    cli = tmp_path / "cli"
    args = [f"ckpt_path={ckpt}", f"prime_midi={song}", "infill_bars=5-8", "controls.note_density=4"]
    sample_run(
        [*args, "num_samples=2", "length=1024", "temperature=1.0", "seed=3", "threads=1", f"out_dir={cli}"]
    )
    for i in range(2):
        assert fetch(midi[i].get_attribute("href")) == (cli / f"sample_{i:03d}.mid").read_bytes()

    type_into(browser, "infill_bars", "8-5")  # bad input: one message, the results kept
    browser.find_element("id", "infill").click()
    wait_for(browser, "body", 60, check=lambda e: "infill_bars must be FIRST-LAST" in e.text)
    assert wait_for(browser, "#infill_roll_0 img").get_attribute("src") == picture
    wait_for(browser, "#infill", 60, check=lambda e: e.is_enabled())
