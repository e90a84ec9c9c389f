"""Fixtures of the packaging tests: the wheel a user would install, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging_venv import build_wheel


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ledgerflow wheel built from the working tree; its source is ``build_source(wheel)``."""
    return build_wheel(tmp_path_factory.mktemp("wheel-build"))
