"""The tests' data locator on a machine without ../shared: every path the tests ask for has a public source,
a copy of the data served on 127.0.0.1 in the layout of those sources fills an empty cache, every file checked
by sha256, and a corrupted file is refused."""

import ast
import hashlib
from pathlib import Path

import pytest

from lm_music.errors import UserError
from tests import conftest
from tests.conftest import ROOT, TEST_DATA, data_path, serve
from tests.data import TestData, build_mirror, locate, read_manifest

TOP_FOLDERS = tuple(sorted({s.path.split("/")[0] + "/" for s in read_manifest()}))  # lyrics/, midi/, ...


def asked_paths() -> dict[str, str]:
    """Every data path the tests name, with the module that names it: the literal arguments of data_path()
    and every string that starts with a top folder of the data ("midi/pop909"). Paths built at run time
    (f-strings) are checked by data_path() itself when a test asks for them. This module is left out: its
    paths are made up to test the check."""
    asked = {}
    for module in sorted(set((ROOT / "tests").glob("*.py")) - {Path(__file__)}):
        tree = ast.parse(module.read_text())
        in_f_strings = {
            id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
        }
        for node in ast.walk(tree):
            if id(node) in in_f_strings:
                continue
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "data_path":
                strings = [a.value for a in node.args if isinstance(a, ast.Constant)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings = [node.value] if node.value.startswith(TOP_FOLDERS) else []
            else:
                continue
            asked.update((path, module.name) for path in strings)
    return asked


def test_every_data_path_the_tests_ask_for_has_a_public_source():
    asked = asked_paths()
    assert {"midi/pop909", "polyphonic/JSB_Chorales.mat", "lyrics/beatles.csv"} <= set(asked)  # it finds them
    no_row = [f"{path} ({module})" for path, module in asked.items() if not TEST_DATA.rows(path)]
    assert not no_row, f"no row in tests/data_sources.tsv for: {', '.join(no_row)}"
    # A folder reads the same on a fresh clone as here: every file under it has its row (POP909 had none,
    # so a clone without ../shared read an empty folder).
    listed = {s.path for s in TEST_DATA.sources}
    unlisted = [
        str(file.relative_to(TEST_DATA.root))
        for path in asked
        if (TEST_DATA.root / path).is_dir()
        for file in sorted((TEST_DATA.root / path).rglob("*"))
        if file.is_file() and str(file.relative_to(TEST_DATA.root)) not in listed
    ]
    assert not unlisted, f"{len(unlisted)} files the tests read have no row, the first {unlisted[:3]}"
    # Nothing reaches the data folder past data_path().
    for module in sorted((ROOT / "tests").glob("test_*.py")):
        if module.name != Path(__file__).name:
            assert "TEST_DATA" not in module.read_text() and "locate(" not in module.read_text(), module.name


def test_a_path_with_no_source_fails_the_test_that_asks_and_one_with_none_skips(tmp_path, monkeypatch):
    with pytest.raises(
        pytest.fail.Exception, match="midi/no_such_folder, which has no row in tests/data_sources"
    ):
        data_path("midi/no_such_folder")
    monkeypatch.setattr(conftest, "TEST_DATA", TestData(tmp_path, writable=True))  # an empty cache
    with pytest.raises(
        pytest.skip.Exception, match="lyrics/beatles.csv is not in .* and has no public source"
    ):
        data_path("lyrics/beatles.csv")
    assert data_path("midi/pop909") == tmp_path / "midi" / "pop909"  # fetched at the session's start


def test_an_empty_cache_is_filled_from_the_sources_with_every_hash_checked(tmp_path):
    build_mirror(TEST_DATA.root, tmp_path / "www")
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
    no_source = [s.path for s in sources if s.kind == "none"]
    assert no_source == ["lyrics/public_domain_songs.csv", "lyrics/beatles.csv"]
    assert [s.path for s in cache.missing()] == no_source  # left out
    assert not list(cache.root.rglob("*.tmp"))
    assert cache.fill() == []  # filled once


def test_a_corrupted_download_is_refused_and_not_kept(tmp_path):
    bad = "polyphonic/JSB_Chorales.mat"
    build_mirror(TEST_DATA.root, tmp_path / "www", corrupt=bad)
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
        "lyrics/public_domain_songs.csv",
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
