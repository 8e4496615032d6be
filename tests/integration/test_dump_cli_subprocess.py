"""`tipc dump` and `cli.demo --dump` as real subprocesses (the installed script, the
demo module); the in-process CLI tests are tests/unit/test_dump_cli.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_dump_cli import PAIR, SUMMARY, last_line, needs_captures


@needs_captures
def test_installed_tipc_script_in_a_subprocess() -> None:
    exe = Path(sys.executable).parent / "tipc"
    if not exe.exists():
        pytest.skip(f"{exe} not installed (pip install -e .)")
    proc = subprocess.run([str(exe), "dump", "--check", str(PAIR)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert SUMMARY.match(last_line(proc.stdout)).group(2) == "0"
    assert proc.stderr == ""


def test_demo_dump_runs(tmp_path: Path) -> None:
    """`python -m cli.demo --dump`: the capture walk-through (the live demo is tested in
    tests/integration/test_demo.py)."""
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "cli.demo", "--dump"], cwd=repo,
                          capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    if PAIR.is_file():
        assert "tipc dump" in proc.stdout and last_line(proc.stdout).endswith(" 0 errors")
    else:
        assert "not present" in proc.stdout
