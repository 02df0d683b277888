"""The asyncperf command: the demo is the README's main job."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asyncperf.cli import build_parser, main


def test_demo_runs_and_reports_what_caching_saved(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--requests", "400", "--keys", "40", "--latency-ms", "2"]) == 0
    out = capsys.readouterr().out
    assert "backend loads" in out
    assert "loads avoided" in out
    assert "stampede: 1000 callers -> 1 backend load" in out
    assert "warm-up: 200 keys loaded" in out
    avoided = int(out.split("loads avoided: ")[1].split(" ")[0])
    assert 0 < avoided < 400


def test_demo_rejects_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--requests", "0"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--latency-ms", "-1"])
    assert "positive" in capsys.readouterr().err


def test_module_entry_point_prints_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "asyncperf", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("asyncperf ")
