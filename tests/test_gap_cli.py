"""`feedrank gap` refuses what it cannot analyse, with the reason and exit status 2, before it
writes anything into the data root."""

from __future__ import annotations

from jobs.cli import main as feedrank


def test_gap_refuses_a_day_outside_the_calendar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path / "root"))
    argv = ["--profile", "tiny", "gap", "--ds", "2027-01-01", "--ranker-folder", str(tmp_path)]
    assert feedrank(argv) == 2
    assert "ds=2027-01-01 is not a day of the calendar" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_gap_needs_a_saved_ranker(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEEDRANK_HOME", str(tmp_path / "root"))
    empty = tmp_path / "no-ranker"
    argv = ["--profile", "tiny", "gap", "--ds", "2026-01-05", "--ranker-folder", str(empty)]
    assert feedrank(argv) == 2
    assert "ranker.json" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()
