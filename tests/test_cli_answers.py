"""What a person sees from the real `cratedigger` command (a subprocess, as from a shell): exit codes when
some or all items fail, exactly one line on stderr for bad input (no decoder chatter, no INFO log lines), one
JSON document on stdout with `--json` whatever happened, and plain words instead of internals."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.launcher import register
from core.cli import build_parser, log_level
from core.native_stderr import quiet_native_stderr
from tests.conftest import REPO_ROOT
from tests.processes import CRATEDIGGER, process_env

CLIP = REPO_ROOT / "demo" / "clips" / "etr-race1.ogg"
NOT_MP3 = "This is a text file that someone renamed to .mp3, not audio at all.\n" * 60
"""libmpg123 (inside libsndfile) prints `Note: Illegal Audio-MPEG-Header ...` lines to fd 2 for this."""


def cratedigger(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One run of the real command in an empty folder, its data in `tmp_path/data`."""
    env = process_env(CRATEDIGGER_DATA_DIR=tmp_path / "data")
    return subprocess.run([str(CRATEDIGGER), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)


def stderr_lines(run: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr as a person sees it: tqdm redraws its bar with carriage returns, the last drawing stays."""
    return [line.rsplit("\r", 1)[-1] for line in run.stderr.splitlines() if line.rsplit("\r", 1)[-1].strip()]


@pytest.fixture
def not_mp3(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp3"
    path.write_text(NOT_MP3)
    return path


def test_a_text_file_named_mp3_gets_one_line_and_no_decoder_noise(tmp_path: Path, not_mp3: Path) -> None:
    run = cratedigger(tmp_path, "genre", str(not_mp3))
    assert run.returncode == 2
    assert run.stdout == ""
    assert stderr_lines(run) == ["cratedigger: 'notes.mp3' is not audio we can decode (it may be corrupt or "
                                 "another kind of file)."], run.stderr


def test_only_the_decoders_lines_are_held_back(capfd: pytest.CaptureFixture[str],
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Whatever else reaches fd 2 during a decode (another thread's log line, a warning) is written back."""
    caplog.set_level(logging.DEBUG, logger="core.native_stderr")
    with quiet_native_stderr():
        os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 28.\n")
        with quiet_native_stderr():  # nested, as decode inside load_segments
            os.write(2, b"Note: Trying to resync...\n")
        os.write(2, b"2026-12-07 06:52:21,028 WARNING somewhere: keep me\n")
    assert capfd.readouterr().err == "2026-12-07 06:52:21,028 WARNING somewhere: keep me\n"
    assert [r.getMessage() for r in caplog.records] == [
        "decoder said: Note: Illegal Audio-MPEG-Header 0x00000000 at offset 28.",
        "decoder said: Note: Trying to resync..."]  # in the log for -v


def test_a_good_file_prints_its_answer_and_no_log_lines_unless_verbose(tmp_path: Path) -> None:
    quiet = cratedigger(tmp_path, "genre", str(CLIP))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and "etr-race1.ogg" in quiet.stdout
    verbose = cratedigger(tmp_path, "genre", "-v", str(CLIP))
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert " INFO core.frontend: " in verbose.stderr  # what -v is for


def test_long_running_verbs_keep_the_configured_log_level() -> None:
    assert log_level("INFO", verbose=False, long_running=True) == logging.INFO  # the bot's log
    assert log_level("INFO", verbose=True, long_running=True) == logging.DEBUG
    assert log_level("INFO", verbose=False, long_running=False) == logging.WARNING  # a one-shot answer
    assert log_level("INFO", verbose=True, long_running=False) == logging.INFO
    assert log_level("ERROR", verbose=False, long_running=False) == logging.ERROR
    parser = build_parser([register])  # the `cratedigger` command's verbs, the bot's included
    assert [getattr(parser.parse_args(verb), "long_running", False) for verb in (
        ["run"], ["worker"], ["train", "genre"], ["genre", "x.wav"], ["sync-commands"], ["demo"])] == [
        True, True, True, False, False, False]


def test_library_add_exit_codes_follow_the_readme(tmp_path: Path, not_mp3: Path) -> None:
    """0 only when everything given went in (or was there already); 2 when anything failed, with the report
    still printed and one line on stderr."""
    only_bad, mixed = tmp_path / "only-bad", tmp_path / "mixed"
    only_bad.mkdir(), mixed.mkdir()
    for name in ("a.mp3", "b.mp3"):  # two different files (the same bytes twice would be a duplicate)
        (only_bad / name).write_text(f"{name}: {NOT_MP3}")
    shutil.copy(not_mp3, mixed / "bad.mp3"), shutil.copy(CLIP, mixed / "good.ogg")

    missing = cratedigger(tmp_path, "library", "add", str(tmp_path / "no-such-folder"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert stderr_lines(missing) == [f"cratedigger: no such file or folder: {tmp_path / 'no-such-folder'}"]

    refused = cratedigger(tmp_path, "library", "add", "http://127.0.0.1:9/song.mp3")
    assert refused.returncode == 2 and len(stderr_lines(refused)) == 1, refused.stderr

    bad = cratedigger(tmp_path, "library", "add", str(only_bad))
    assert bad.returncode == 2 and "added 0 track(s), 0 already there, 2 failed" in bad.stdout
    assert stderr_lines(bad)[-1].startswith("cratedigger: 2 of 2 items failed; first: "), bad.stderr

    partly = cratedigger(tmp_path, "library", "add", str(mixed))
    assert partly.returncode == 2 and "added 1 track(s), 0 already there, 1 failed" in partly.stdout
    lines = stderr_lines(partly)
    assert not any("MPEG" in line or line.startswith("Note:") for line in lines), partly.stderr
    assert lines[-1].startswith("cratedigger: 1 of 2 items failed; first: "), partly.stderr
    assert all(line.startswith("analysing:") for line in lines[:-1]), partly.stderr  # only the bar besides

    again = cratedigger(tmp_path, "library", "add", str(mixed / "good.ogg"))
    assert again.returncode == 0 and "1 already there, 0 failed" in again.stdout, again.stderr


def test_json_is_one_document_on_stdout_whatever_happens(tmp_path: Path, not_mp3: Path) -> None:
    one_bad = cratedigger(tmp_path, "--json", "genre", str(not_mp3))
    assert one_bad.returncode == 2 and len(stderr_lines(one_bad)) == 1
    [doc] = json.loads(one_bad.stdout)
    assert doc["file"] == str(not_mp3) and "not audio" in doc["error"]

    partly = cratedigger(tmp_path, "--json", "genre", str(CLIP), str(not_mp3))
    assert partly.returncode == 2
    good, bad = json.loads(partly.stdout)
    assert good["genre"] and "not audio" in bad["error"]

    refused = cratedigger(tmp_path, "--json", "similar", str(tmp_path / "missing.wav"))
    assert refused.returncode == 2 and len(stderr_lines(refused)) == 1
    assert json.loads(refused.stdout)["error"] == stderr_lines(refused)[0].removeprefix("cratedigger: ")


def test_members_and_admins_read_plain_words(tmp_path: Path) -> None:
    stats = cratedigger(tmp_path, "library", "stats")
    assert stats.returncode == 0 and stats.stderr == ""
    assert stats.stdout.splitlines() == ["0 track(s): 0 ready, 0 waiting for a reindex, 0 failed",
                                         "0 searchable (in the similarity index)"]
    machine = json.loads(cratedigger(tmp_path, "--json", "library", "stats").stdout)
    assert machine["analysis_version"].startswith("frontend=")  # the detail stays for scripts
    helped = cratedigger(tmp_path, "genre", "--help")
    assert helped.returncode == 0 and "core." not in helped.stdout and "cach" not in helped.stdout
