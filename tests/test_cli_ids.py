"""Ids typed at the command line that SQLite cannot hold are refused like any bad input (exit 2, one line),
not by an OverflowError traceback from the store halfway through the command."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.cli import main

HUGE = str(2**63)  # one past SQLite's largest integer


@pytest.mark.parametrize("argv", [
    ["tag", "--user", "1", HUGE, "calm"],
    ["feedback", "--user", HUGE, "3", "up"],
    ["history", "--user", "-5"],
    ["recommend", "--user", "1", "--guild", HUGE, "--mood", "calm"],
    ["library", "stats", "--guild", "1e3"],
])
def test_ids_the_store_cannot_hold_exit_2_with_one_line(argv: list[str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--data-dir", str(tmp_path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not an id" in err


def test_the_largest_id_sqlite_holds_is_accepted_and_simply_unknown(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tag", "--user", "1", str(2**63 - 1), "calm", "--data-dir", str(tmp_path)]) == 2
    assert "there is no track" in capsys.readouterr().err
