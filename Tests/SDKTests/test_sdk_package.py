"""The package as pip installs it: metadata, dependencies, entry points, typing marker."""

from __future__ import annotations

import importlib.metadata

import pytest

import blastbeat
from sdk_helpers import SDK_SRC


def test_typed_marker_in_the_sources():
    assert (SDK_SRC / "blastbeat" / "py.typed").is_file()


def test_installed_distribution():
    try:
        dist = importlib.metadata.distribution("blastbeat")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("blastbeat is not installed in this environment (pip install ./python)")
    assert dist.version == blastbeat.__version__
    assert [r.split(">")[0].split("=")[0].strip() for r in dist.requires or []] == ["pyzmq"]
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"blastbeat-wsgi": "blastbeat.wsgi:main", "blastbeat-bridge": "blastbeat.bridge:main"}
