"""Fixtures shared by the whole test suite (keep this small; add only what many tests use).

The reference material (captures, CLI transcripts, kernel-peer) lives in ../shared next
to the repository; tests that need it skip with a clear reason where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
CAPTURES_DIR = SHARED_DIR / "reference" / "captures"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (DESIGN.md, reference/, kernel-peer/)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared reference directory {SHARED_DIR} is absent")
    return SHARED_DIR


@pytest.fixture(scope="session")
def captures_dir(shared_dir: Path) -> Path:
    """../shared/reference/captures: real Linux 6.1 TIPC pcaps and status files."""
    d = shared_dir / "reference" / "captures"
    if not d.is_dir():
        pytest.skip(f"reference captures directory {d} is absent")
    return d


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the long versions of tests (marked slow)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long version of a test; runs only with "
                            "--slow or TIPCPY_SLOW=1")
    config.addinivalue_line("markers", "faults: fault injection through the impairment relay")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or os.environ.get("TIPCPY_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long version: run with --slow or TIPCPY_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
