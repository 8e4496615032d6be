"""The man pages render without a groff warning (groff runs as a subprocess; the
in-process man page checks are tests/unit/test_manpages.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.unit.test_manpages import GROFF_HINT, MAN_DIR, all_pages


@pytest.mark.parametrize("name", all_pages())
def test_page_renders_without_warnings(name: str) -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip(GROFF_HINT)
    r = subprocess.run([groff, "-man", "-ww", "-z", str(MAN_DIR / name)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", f"groff on {name}: rc={r.returncode}\n{r.stderr}"
