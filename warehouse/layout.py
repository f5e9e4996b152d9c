"""Where local state lives: everything under one data root, FEEDRANK_HOME.

This module and warehouse/store.py are the only places that build paths. Code elsewhere is
handed a `Folder` (a report's, a model's) and names files inside it through `Folder.file`;
it never chooses a location.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = REPO_ROOT / ".feedrank"  # git-ignored
PROFILES_DIR = REPO_ROOT / "jobs" / "profiles"  # one TOML file per settings profile


def profile_file(profile: str) -> Path:
    """The TOML file of a settings profile."""
    return PROFILES_DIR / f"{profile}.toml"


def default_home(profile: str) -> Path:
    """A profile's own data root when FEEDRANK_HOME is not set: profiles never share one."""
    return DEFAULT_HOME / profile


def executable(name: str) -> Path:
    """A console script of this interpreter's environment (the venv's `airflow`, ...)."""
    return Path(sys.executable).with_name(name)


@dataclasses.dataclass(frozen=True)
class Folder:
    """A folder handed to code that writes several files (a report, a saved model)."""

    path: Path

    def file(self, name: str) -> Path:
        """The path of `name` (may hold '/': a subfolder) in this folder, to read."""
        return self.path / name

    def writable(self, name: str) -> Path:
        """The path of `name` in this folder, its parent folders created, to write."""
        path = self.file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def sub(self, name: str) -> Folder:
        """A subfolder (not created until something is written into it)."""
        return Folder(self.path / name)

    def __str__(self) -> str:
        return str(self.path)


class DataRootError(RuntimeError):
    """A data root that belongs to another settings profile."""


@dataclasses.dataclass(frozen=True)
class DataRoot:
    """The folders and files of one data root."""

    home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def airflow_db_url(self) -> str:
        return f"sqlite:///{(self.airflow_home / 'airflow.db').resolve()}"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{(self.home / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlflow" / "artifacts"

    @property
    def feed_store(self) -> Path:
        return self.home / "feeds.sqlite"

    @property
    def artifacts(self) -> Path:
        """Versioned model artifacts by ds (warehouse.artifacts), e.g. the retrieval index,
        and training checkpoints (`checkpoint_folder`)."""
        return self.home / "artifacts"

    @property
    def compiled_cache(self) -> Folder:
        """Compiled models' object files by a hash of the model and the target CPU
        (models.ranking.compiled): the same trees are compiled once per root."""
        return Folder(self.home / "cache" / "compiled")

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def stack(self) -> Folder:
        """The local stack's state (`feedrank stack`): run/<service>.pid, logs/<service>.log,
        postgres/ (its cluster), spark/ (workers' folders), redis/."""
        return Folder(self.home / "stack")

    def report_folder(self, job: str, ds: str) -> Folder:
        """Where a job's report for ds goes, its figures beside it: reports/<job>/<ds>/."""
        return Folder(self.reports / job / ds)

    def checkpoint_folder(self, job: str, ds: str, name: str) -> Folder:
        """Where a job's training of `name` for ds keeps its checkpoints, so that a retried or
        killed task resumes from them: artifacts/checkpoints/<job>/<ds>/<name>/."""
        return Folder(self.artifacts / "checkpoints" / job / ds / name)

    @property
    def secrets(self) -> Path:
        """Secrets generated for this root (secrets/<name>, owner-only: 0700 folder, 0600)."""
        return self.home / "secrets"

    def secret(self, name: str) -> bytes:
        """This root's secret `name` (64 hex digits), generated at first use, readable by the
        owner only; raises DataRootError if its file is open to others or empty."""
        path = self.secrets / name
        if not path.exists():
            self.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.secrets, prefix=f".{name}-")  # mode 0600
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
            try:  # link fails if a concurrent first user created it meanwhile: keep theirs
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise DataRootError(
                f"{path} is open to other users (mode {mode:04o}): `chmod 600 {path}`, and "
                "replace it if others may have read it"
            )
        value = path.read_bytes().strip()
        if len(value) < 16:
            raise DataRootError(f"{path} holds no usable secret: delete it to generate one")
        return value

    def log_file(self, name: str) -> Path:
        """A log file under logs/, its folder created."""
        return Folder(self.logs).writable(f"{name}.log")

    @contextlib.contextmanager
    def scratch(self, name: str) -> Iterator[Folder]:
        """A fresh folder under tmp/ for files on their way elsewhere; removed afterwards."""
        folder = self.home / "tmp" / f"{name}-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        try:
            yield Folder(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def dags_folder() -> Path:
        return REPO_ROOT / "dags"

    def ensure(self) -> DataRoot:
        for folder in (self.warehouse, self.airflow_home, self.mlflow_artifacts, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def ingested_log_file(self) -> Path:
        """The log an ingest loaded into this root (format, files, calendar), as JSON, so
        later jobs on the root need none of it repeated."""
        return self.home / "ingested_log.json"

    def ingested_log(self) -> dict | None:
        """The `log` settings the last ingest into this root recorded, or None."""
        try:
            return json.loads(self.ingested_log_file.read_text())
        except FileNotFoundError:
            return None

    def remember_log(self, values: dict) -> None:
        """Record the `log` settings of an ingest (atomically: a reader sees the old or the
        new file, never half of one)."""
        self.home.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.home, prefix=".ingested_log-")
        with os.fdopen(fd, "w") as out:
            json.dump(values, out, indent=2, default=str)
        os.replace(tmp, self.ingested_log_file)

    @property
    def owner_file(self) -> Path:
        """Names the settings profile that owns this root (written on first use)."""
        return self.home / "profile"

    def owner(self) -> str | None:
        """The profile this root belongs to, or None while no job has used it."""
        try:
            return self.owner_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def check_profile(self, profile: str) -> None:
        """Raise DataRootError if another profile owns this root; never writes."""
        owner = self.owner()
        if owner is not None and owner != profile:
            raise DataRootError(
                f"data root {self.home} belongs to profile {owner!r}, not {profile!r}: refusing "
                f"to run {profile!r} on it. Use profile {owner!r} (--profile, FEEDRANK_PROFILE "
                f"or the DAG's `profile` Param), or give {profile!r} its own root (unset "
                f"FEEDRANK_HOME for the default {DEFAULT_HOME / profile}, or an empty folder)."
            )

    def claim(self, profile: str) -> DataRoot:
        """Record `profile` as this root's owner if it has none; raise DataRootError if it
        belongs to another. Call before writing anything into the root."""
        self.check_profile(profile)
        if self.owner() is None:
            self.home.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.home, prefix=".profile-")
            with os.fdopen(fd, "w") as out:
                out.write(profile + "\n")
            try:  # link fails if a concurrent first job claimed the root meanwhile
                os.link(tmp, self.owner_file)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            self.check_profile(profile)
        return self
