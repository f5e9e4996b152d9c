"""Versioned artifacts: published whole or not at all, readable only once committed."""

from __future__ import annotations

import pytest

from warehouse.artifacts import Artifact, ArtifactStore
from warehouse.store import WarehouseError

ART = Artifact("thing", ("a.bin", "b.json"))


def test_publish_read_and_replace(tmp_path):
    store = ArtifactStore(tmp_path)
    store.publish(ART, "2026-01-05", {"a.bin": b"1", "b.json": b"{}"})
    store.publish(ART, "2026-01-06", {"a.bin": b"2", "b.json": b"{}"})
    store.publish(ART, "2026-01-05", {"a.bin": b"3", "b.json": b"{}"})  # re-run replaces
    assert store.versions(ART) == ["2026-01-05", "2026-01-06"]
    assert store.latest(ART, upto="2026-01-05") == "2026-01-05"
    assert store.read(ART, "2026-01-05", "a.bin") == b"3"


def test_incomplete_or_failed_publish_leaves_nothing_visible(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path)
    with pytest.raises(WarehouseError, match="do not match"):
        store.publish(ART, "2026-01-05", {"a.bin": b"1"})  # a file missing
    # a crash while writing the second file: the staged folder never gets its marker
    calls = []

    def boom(self, data):
        calls.append(self.name)
        if len(calls) == 2:
            raise OSError("disk full")
        return len(data)

    monkeypatch.setattr("pathlib.Path.write_bytes", boom)
    with pytest.raises(OSError, match="disk full"):
        store.publish(ART, "2026-01-05", {"a.bin": b"1", "b.json": b"{}"})
    assert store.versions(ART) == []
    with pytest.raises(WarehouseError, match="no published ds=2026-01-05"):
        store.read(ART, "2026-01-05", "a.bin")
