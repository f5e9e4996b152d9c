"""Versioned artifact folders by ds, published atomically like a partition.

    <artifacts>/<name>/ds=2026-01-05/<files> + _COMMITTED     what readers see
    <artifacts>/<name>/_staging/ds=2026-01-05/...              being written

A publish writes every file into a fresh staging folder, marks it complete, then renames it
into place (the old version goes to the trash first), so a crash leaves the old version or
none, never a partial one. Readers only see folders with the marker. Callers hand over bytes
and file names from the artifact's spec; they never build a path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from warehouse.store import MARKER, WarehouseError, _check_ds


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A kind of versioned artifact: its name and the files every version holds."""

    name: str
    files: tuple[str, ...]


RETRIEVAL_INDEX = Artifact(
    "retrieval_index",
    (
        "index.faiss",  # the FAISS index over the pool's post vectors (faiss.serialize_index)
        "post_ids.npy",  # int64 post id of each index row
        "user_ids.npy",  # int64 active users
        "user_vectors.npy",  # float32 (users, dim) their embeddings at the end of ds
        "meta.json",  # model version, kind, recall against exact, sizes
    ),
)


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, artifact: Artifact, ds: str, *, staged: bool = False) -> Path:
        base = self.root / artifact.name
        return (base / "_staging" if staged else base) / f"ds={_check_ds(ds)}"

    def versions(self, artifact: Artifact) -> list[str]:
        """The published versions (ds), oldest first."""
        base = self.root / artifact.name
        if not base.exists():
            return []
        return sorted(
            p.name[3:] for p in base.iterdir() if p.name.startswith("ds=") and (p / MARKER).exists()
        )

    def latest(self, artifact: Artifact, upto: str | None = None) -> str | None:
        days = [d for d in self.versions(artifact) if upto is None or d <= upto]
        return days[-1] if days else None

    def publish(self, artifact: Artifact, ds: str, files: Mapping[str, bytes]) -> None:
        """Write exactly the artifact's files for ds and swap them in atomically."""
        if set(files) != set(artifact.files):
            raise WarehouseError(
                f"artifact {artifact.name} ds={ds}: files {sorted(files)} do not match "
                f"{sorted(artifact.files)}"
            )
        staged = self._dir(artifact, ds, staged=True)
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        for name, data in files.items():
            (staged / name).write_bytes(data)
        marker = {
            "artifact": artifact.name,
            "ds": ds,
            "written_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        (staged / MARKER).write_text(json.dumps(marker))
        final = self._dir(artifact, ds)
        trash = final.parent / "_trash" / f"{final.name}.{uuid.uuid4().hex}"
        if final.exists():
            trash.parent.mkdir(parents=True, exist_ok=True)
            final.rename(trash)
        staged.rename(final)
        shutil.rmtree(trash, ignore_errors=True)

    def read(self, artifact: Artifact, ds: str, name: str) -> bytes:
        """One file of a published version; a clear error when absent."""
        if name not in artifact.files:
            raise WarehouseError(f"artifact {artifact.name} has no file {name!r}")
        folder = self._dir(artifact, ds)
        if not (folder / MARKER).exists():
            raise WarehouseError(f"artifact {artifact.name} has no published ds={ds}")
        return (folder / name).read_bytes()
