"""The benchmark suite still runs: `python -m bench --quick` on the in-process cases
writes a JSON file with figures, baselines and ratios. Speed is never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_quick_writes_figures_baselines_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--cases", "lookup,bulk",
         "--bindings", "20000", "--bulk", "5000", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ratio" in r.stdout and "lookup" in r.stdout
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["kernel"]
    assert data["versions"]["python"] and "pyzmq" in data["versions"]
    rows = data["rows"]
    cases = {row["case"] for row in rows}
    assert {"lookup", "bulk"} <= cases
    for row in rows:
        assert row["value"] is not None and row["value"] > 0, row
        assert row["baseline"] and row["baseline_value"] > 0, row
        assert abs(row["ratio"] - row["value"] / row["baseline_value"]) < 1e-9, row
    lookup = next(row for row in rows if row["figure"].startswith("anycast lookups/s"))
    assert lookup["target"] and lookup["met"] in (True, False)
    assert all(c["error"] is None for c in data["cases"].values())


def test_bench_rejects_unknown_case(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "bench", "--cases", "nope",
                        "--out", str(tmp_path / "x.json")],
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown case" in r.stderr
    assert not (tmp_path / "x.json").exists()


def test_bench_embedded_rows_run(tmp_path: Path) -> None:
    """The embedded-node rows (two processes, each with its own embedded node over UDP,
    against pinned pyzmq tcp) still produce figures, baselines and ratios."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--cases", "embedded", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert data["cases"]["embedded"]["error"] is None
    rows = {row["figure"]: row for row in data["rows"]}
    oneway = rows["embedded node to embedded node over UDP, RDM 100 B one-way"]
    median = rows["embedded node to embedded node over UDP, RDM 100 B round trip median"]
    for row in (oneway, median):
        assert row["value"] is not None and row["value"] > 0, row
        assert row["baseline_value"] is not None and row["baseline_value"] > 0, row
        assert "pyzmq" in row["baseline"] and "pinned" in row["note"], row
        assert row["met"] in (True, False), row
    assert oneway["extra"]["tipcpy"]["received"] >= 2


def test_bench_group_case_runs(tmp_path: Path) -> None:
    """`python -m bench --cases group` (real tipcd pair, 3 member processes) gives a
    figure and its same-run multicast baseline; the group lost nothing."""
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--cases", "group", "--duration", "0.3",
         "--out", str(out)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    (row,) = [row for row in data["rows"] if row["case"] == "group"]
    assert row["value"] and row["value"] > 0 and row["baseline_value"] > 0, row
    tip = row["extra"]["tipcpy"]
    assert tip["sent"] > 0 and tip["received"] == [tip["sent"]] * 3, tip
    assert data["cases"]["group"]["error"] is None


def test_bench_crypto_case_gives_ratio_and_aead_cost(tmp_path: Path) -> None:
    """The encrypted-throughput case runs: two keyed tipcd and two plain ones, a ratio,
    and the AES-GCM cost per packet beside it (figures are not judged)."""
    out = tmp_path / "crypto.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--cases", "crypto", "--size", "1024",
         "--duration", "0.3", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["case"] == "crypto" and row["figure"].startswith("RDM 1024 B")
    assert row["value"] > 0 and row["baseline_value"] > 0, row
    assert row["met"] in (True, False) and "AESGCM enc+dec" in row["note"], row
    cost = row["extra"]["cost"]
    assert cost["aesgcm_us_per_packet"] > 0 and cost["packets_per_message"] == 1


def test_bench_bcast_case_runs(tmp_path: Path) -> None:
    """`python -m bench --cases bcast` (3 and 8 tipcd on a namespace segment, root
    only) gives the BROADCAST figure and its same-run REPLICAST baseline, nothing
    lost, and the multicast really went on the broadcast link."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip("the bcast case builds network namespaces: needs root")
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--cases", "bcast", "--duration", "0.3",
         "--out", str(out)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    rows = [row for row in data["rows"] if row["case"] == "bcast"]
    assert len(rows) == 2, data["rows"]
    for row in rows:
        assert row["value"] and row["value"] > 0 and row["baseline_value"] > 0, row
        tip = row["extra"]["tipcpy"]
        assert tip["loss"] == 0.0, row
        assert tip["bc_tx_packets"] > 0, row  # on the broadcast link
        assert row["extra"]["baseline"]["bc_tx_packets"] == 0, row  # replicast: not
