"""Downloads from a real local HTTP server: fail-over on truncated, corrupt and missing files, never a partial dest."""

import hashlib
import logging
import shutil
from pathlib import Path

import pytest

from lm_music.data.download import download
from lm_music.errors import UserError
from lm_music.tasks.pianoroll.datamodule import SPLITS, load_splits, read_benchmark
from tests.conftest import QuietHandler, data_path, serve

JSB_MAT = data_path("polyphonic/JSB_Chorales.mat")
JSB_SHA256 = "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4"


class Handler(QuietHandler):
    """Serves the folder; /truncated announces the whole .mat but sends half of it and hangs up."""

    def do_GET(self):
        if self.path != "/truncated":
            return super().do_GET()
        body = (Path(self.directory) / "JSB_Chorales.mat").read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


@pytest.fixture
def server(tmp_path):
    """Base URL of an HTTP server on 127.0.0.1 serving JSB_Chorales.mat and a corrupt copy."""
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(JSB_MAT, www / "JSB_Chorales.mat")
    good = (www / "JSB_Chorales.mat").read_bytes()
    (www / "corrupt.mat").write_bytes(good[:128] + bytes(len(good) - 128))  # right header, zeroed body
    with serve(www, Handler) as url:
        yield url


def test_download_with_checksum(server, tmp_path):
    dest = tmp_path / "data" / "JSB_Chorales.mat"
    assert download([f"{server}/JSB_Chorales.mat"], dest, sha256=JSB_SHA256) == dest
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == JSB_SHA256


def test_bad_copies_fail_over_to_the_next_url(server, tmp_path, caplog):
    dest = tmp_path / "data" / "JSB_Chorales.mat"
    urls = [
        f"{server}/truncated",
        f"{server}/corrupt.mat",
        f"{server}/missing.mat",
        f"{server}/JSB_Chorales.mat",
    ]
    with caplog.at_level(logging.WARNING, logger="lm_music"):
        download(urls, dest, verify=read_benchmark)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == JSB_SHA256
    assert len(caplog.records) == 3  # one line per failed URL
    assert "truncated" in caplog.records[0].getMessage() and "404" in caplog.records[2].getMessage()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["JSB_Chorales.mat"]


@pytest.mark.parametrize(
    "paths, checks, reason",
    [
        (["/truncated"], {}, "truncated"),
        (["/corrupt.mat"], {"verify": read_benchmark}, "cannot be read"),
        (["/JSB_Chorales.mat"], {"sha256": "0" * 64}, "expected 0000"),
        (["/truncated", "/missing.mat"], {}, "404"),
    ],
)
def test_all_urls_failing_is_a_user_error_and_leaves_nothing(server, tmp_path, paths, checks, reason):
    dest = tmp_path / "data" / "JSB_Chorales.mat"
    urls = [server + path for path in paths]
    with pytest.raises(UserError, match=reason) as error:
        download(urls, dest, **checks)
    message = str(error.value)
    assert all(url in message for url in urls) and str(dest) in message and "\n" not in message
    assert not dest.parent.exists() or not list(dest.parent.iterdir())


def test_unreachable_server_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="put it at"):
        download(["http://127.0.0.1:9/JSB_Chorales.mat"], tmp_path / "JSB_Chorales.mat", timeout=5)


def test_load_splits_downloads_a_missing_benchmark(server, tmp_path):
    dest = tmp_path / "data" / "JSB_Chorales.mat"
    urls = [f"{server}/corrupt.mat", f"{server}/JSB_Chorales.mat"]
    splits = load_splits("benchmark", str(dest), tmp_path / "cache", 1, None, False, 0, urls=urls)
    assert [len(splits[split]) for split in SPLITS] == [229, 76, 77]
    assert dest.is_file()
