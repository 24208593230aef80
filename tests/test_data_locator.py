"""The tests' data locator on a machine without ../shared: a copy of the data served on 127.0.0.1 in the layout
of its public sources fills an empty cache, every file checked by sha256; a corrupted file is refused."""

import hashlib
from pathlib import Path

import pytest

from lm_music.errors import UserError
from tests.conftest import DATA_DIR, ROOT, serve
from tests.data import TestData, locate, read_manifest


def mirror(www: Path, corrupt: str | None = None) -> None:
    """The public sources' layout (OWNER/REPO/COMMIT/PATH) over the local data folder; `corrupt` gets one
    byte changed."""
    for source in read_manifest():
        if source.kind != "github":
            continue
        served = www / source.source
        served.parent.mkdir(parents=True, exist_ok=True)
        if source.path == corrupt:
            body = bytearray((DATA_DIR / source.path).read_bytes())
            body[len(body) // 2] ^= 0xFF
            served.write_bytes(bytes(body))
        else:
            served.symlink_to(DATA_DIR / source.path)


def test_an_empty_cache_is_filled_from_the_sources_with_every_hash_checked(tmp_path):
    mirror(tmp_path / "www")
    cache = TestData(tmp_path / "cache", writable=True)
    with serve(tmp_path / "www") as url:
        cache.base_url = url
        added = cache.fill()
    sources = read_manifest()
    with_source = [s for s in sources if s.kind != "none"]
    assert sorted(added) == sorted(cache.root / s.path for s in with_source)
    for source in with_source:  # fetched ones and the pickles made from the .mat files
        assert hashlib.sha256((cache.root / source.path).read_bytes()).hexdigest() == source.sha256, (
            source.path
        )
    assert [s.path for s in cache.missing()] == ["lyrics/beatles.csv"]  # no public source: left out
    assert not list(cache.root.rglob("*.tmp"))
    assert cache.fill() == []  # filled once


def test_a_corrupted_download_is_refused_and_not_kept(tmp_path):
    bad = "polyphonic/JSB_Chorales.mat"
    mirror(tmp_path / "www", corrupt=bad)
    cache = TestData(tmp_path / "cache", writable=True)
    with serve(tmp_path / "www") as url, pytest.raises(UserError) as error:
        cache.base_url = url
        cache.fill()
    assert f"{bad}: could not download JSB_Chorales.mat" in str(error.value)
    assert "sha256 is" in str(error.value)
    # The pickle made from it cannot be made either; everything else arrived.
    assert {s.path for s in cache.missing()} == {
        bad,
        "polyphonic/bl_pickles/JSB Chorales.pickle",
        "lyrics/beatles.csv",
    }
    assert not (cache.root / bad).exists() and not list(cache.root.rglob("*.tmp"))


def test_the_folder_is_the_variable_then_the_shared_folder_then_a_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LM_MUSIC_TEST_DATA", str(tmp_path / "mine"))
    assert locate().root == tmp_path / "mine" and locate().writable
    monkeypatch.delenv("LM_MUSIC_TEST_DATA")
    shared = ROOT.parent / "shared" / "data"
    if shared.is_dir():
        assert locate().root == shared and not locate().writable
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        assert locate().root == tmp_path / "cache" / "lm_music" / "test-data"
