"""`cratedigger genre` end to end through core.cli.main: a real verdict on real files, one clean line and
exit 2 for every kind of bad input, partial results over several files, and the no-model fallback."""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.cli import main
from core.config import DEFAULT_MODELS_DIR
from core.constants import GENRES
from core.genre import read_manifest
from tests.http_fixture import LocalHTTPServer


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray .env, the repository's models, a private data folder."""
    monkeypatch.chdir(tmp_path)
    for var in ("CRATEDIGGER_MODELS_DIR", "CRATEDIGGER_MAX_CLIP_SECONDS", "CRATEDIGGER_MAX_SEGMENTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CRATEDIGGER_DATA_DIR", str(tmp_path / "data"))


def _wav(path: Path, y: np.ndarray, sr: int = 22_050) -> Path:
    sf.write(path, y, sr)
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["genre", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_clean_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("cratedigger: ")
    return lines[0]


def test_json_verdict_for_a_synthesised_clip(capsys, tmp_path: Path, tone) -> None:
    clip = _wav(tmp_path / "tone.wav", tone(9.5, freq=196.0))

    code, out, err = _run(capsys, "--json", str(clip))

    assert code == 0, err
    [doc] = json.loads(out)
    assert doc["file"] == str(clip) and doc["genre"] in GENRES
    assert doc["segments"] == 3 and doc["model"] == read_manifest(DEFAULT_MODELS_DIR)[0]["name"]
    assert doc["confidence"] == doc["top"][0][1] and len(doc["top"]) == 3
    assert [g for g, _ in doc["top"]][0] == doc["genre"]
    assert 0 < sum(p for _, p in doc["top"]) <= 1.0001 and doc["sections"] == []


def test_human_table(capsys, tmp_path: Path, tone) -> None:
    code, out, _ = _run(capsys, str(_wav(tmp_path / "a.wav", tone(4.0))))
    assert code == 0
    assert out.splitlines()[0].split() == ["file", "genre", "conf", "segs", "top", "3"]
    assert "a.wav" in out and f"model: {read_manifest(DEFAULT_MODELS_DIR)[0]['name']}" in out


def _two_hour_wav(path: Path) -> Path:
    """A valid 8-bit 8 kHz mono WAV whose header says 2 hours; the samples are a sparse hole of zeros."""
    sr, n = 8_000, 8_000 * 7_200
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sr, sr, 1, 8)  # PCM, mono, 8 kHz, 1 byte per sample
    header = b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + fmt
    with path.open("wb") as f:
        f.write(header + b"data" + struct.pack("<I", n))
        f.truncate(44 + n)
    return path


BAD_INPUTS = {
    "corrupt bytes": ("corrupt.wav", lambda p: p.write_bytes(np.random.default_rng(1).bytes(20_000)),
                      "not audio we can decode"),
    "text renamed .mp3": ("notes.mp3", lambda p: p.write_text("these are my notes, not a song\n" * 50),
                          "not audio we can decode"),
    "zero-length file": ("empty.wav", lambda p: p.write_bytes(b""), "empty"),
    "pure silence": ("silence.wav", lambda p: _wav(p, np.zeros(5 * 22_050, np.float32)), "silent"),
    "two hours": ("long.wav", _two_hour_wav, "longer than"),
    "unknown extension": ("song.xyz", lambda p: p.write_bytes(b"\x00" * 100), "not an audio format"),
    "missing path": ("nowhere.mp3", lambda p: None, "no such file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case: str, capsys, tmp_path: Path) -> None:
    name, make, reason = BAD_INPUTS[case]
    path = tmp_path / name
    make(path)

    code, out, err = _run(capsys, "--json", str(path))

    assert code == 2
    assert reason in _one_clean_line(err)  # the two-hour file from its header: see tests/test_audio.py
    assert json.loads(out) == [{"file": str(path), "error": _one_clean_line(err).removeprefix("cratedigger: ")}]


def test_several_files_report_each_and_exit_2_if_any_failed(capsys, tmp_path: Path, tone) -> None:
    good = _wav(tmp_path / "good.wav", tone(4.0))
    missing = tmp_path / "gone.ogg"

    code, out, err = _run(capsys, "--json", str(good), str(missing))

    assert code == 2
    line = _one_clean_line(err)
    assert "1 of 2 files" in line and "no such file" in line
    docs = json.loads(out)
    assert [d["file"] for d in docs] == [str(good), str(missing)]
    assert docs[0]["genre"] in GENRES and "no such file" in docs[1]["error"]


def test_without_a_model_the_summary_is_labelled(capsys, tmp_path: Path, tone, monkeypatch) -> None:
    (tmp_path / "no-models").mkdir()
    monkeypatch.setenv("CRATEDIGGER_MODELS_DIR", str(tmp_path / "no-models"))

    code, out, _ = _run(capsys, "--json", str(_wav(tmp_path / "t.wav", tone(4.0))))

    assert code == 0
    [doc] = json.loads(out)
    assert doc["genre"] is None and doc["model"] is None
    assert doc["note"] == "no genre model installed" and doc["features"]["segments"] >= 1
    assert doc["features"]["families"] == []  # with no model to read them, no features were computed


def test_links_get_a_verdict_or_one_line(capsys, monkeypatch: pytest.MonkeyPatch,
                                         http_server: LocalHTTPServer, tone) -> None:
    """Links follow the bot's rules: the guard (only the local server is allowed here), the caps, no
    playlists."""
    monkeypatch.setenv("CRATEDIGGER_FETCH_ALLOW_HOSTS", http_server.netloc)
    buffer = io.BytesIO()
    sf.write(buffer, tone(4.0), 22_050, format="WAV")
    song = http_server.add_file("song.wav", buffer.getvalue(), "audio/wav")
    code, out, err = _run(capsys, "--json", song)
    assert code == 0, err
    [doc] = json.loads(out)
    assert doc["file"] == song and doc["title"] == "song" and doc["segments"] == 1 and doc["genre"] in GENRES
    feed = http_server.add_feed("feed.xml", [("One", song), ("Two", song)])
    for link, reason in (("http://10.20.30.40/leak.wav", "private or local network address"),
                         (http_server.url("song.wav", host="localhost"), "private or local network address"),
                         (feed, "playlist"), (http_server.url("gone.wav"), "404")):
        code, out, err = _run(capsys, "--json", link)
        assert code == 2 and reason in _one_clean_line(err), link
        assert json.loads(out) == [{"file": link, "error": _one_clean_line(err).removeprefix("cratedigger: ")}]
    assert not list((Path("data") / "tmp").iterdir())  # every fetch's job folder is gone
