"""Settings of a real log as the raw input (the `log` section), and what each format records."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORMATS = ("mind", "ebnerd", "raw")  # raw: bring your own log (warehouse.ingest.raw)
# The files of each format inside `log.path`, unless the profile names others.
DEFAULT_FILES: dict[str, dict[str, str]] = {
    "mind": {"behaviors": "behaviors.tsv", "items": "news.tsv"},
    "ebnerd": {"behaviors": "behaviors.parquet", "items": "articles.parquet"},
    "raw": {"behaviors": "impressions.parquet", "items": "posts.parquet"},
}
# The ranker tasks a format's log can train (models.ranking.gbdt.TASKS names them): both logs record
# clicks only; EB-NeRD also the read time of the clicked article (its dwell).
RECORDED: dict[str, tuple[str, ...]] = {
    "mind": ("click",),
    "ebnerd": ("click", "dwell"),
    "raw": ("click",),  # its dwell_s, when given, reaches the raw tables but trains no model
}


class LogSettings(BaseModel):
    """A real impression log to ingest instead of simulating; `format` None: the simulator.

    The calendar (`start_date`, `days`) is the log's: every job of a log profile runs on
    those days. Given, the ingest refuses a log that does not cover exactly them; left out, the
    ingest takes the log's own first and last day. The ingest records the log's section in the
    data root (warehouse.layout.DataRoot.remember_log), so later jobs repeat none of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["mind", "ebnerd", "raw"] | None = None  # None: the simulator is the raw input
    path: Path | None = None  # the folder holding the log's files
    behaviors: str | None = None  # the impressions file in `path` (default per format)
    items: str | None = None  # the item metadata file in `path` (news.tsv, articles.parquet)
    start_date: dt.date | None = None  # the log's first day (ds)
    days: int | None = Field(None, ge=1)  # the log's number of days
    batch_rows: int = Field(50_000, ge=1)  # rows per streamed batch (memory vs. overhead)
    block_bytes: int = Field(4 << 20, ge=1 << 10)  # CSV read block; rows of a line fit one
    # The share of impressions whose item has no metadata that the ingest drops (with their
    # clicks) before it refuses the log: more means the wrong metadata file.
    max_missing_share: float = Field(0.01, ge=0, le=1)
    # where the ingest's contracts run (warehouse.contracts.validate): "pandas" collects each
    # table's day to the driver once (seconds per log); "spark" for days the driver cannot hold
    contracts_engine: Literal["pandas", "spark"] = "pandas"

    @model_validator(mode="after")
    def _complete(self) -> LogSettings:
        if (self.start_date is None) != (self.days is None):
            raise ValueError("a log's calendar needs both log.start_date and log.days, or neither")
        return self

    def file(self, kind: str) -> str:
        """The name of the `behaviors` or `items` file inside `path`."""
        if self.format is None:
            raise ValueError("no log format set (log.format)")
        return getattr(self, kind) or DEFAULT_FILES[self.format][kind]

    def dates(self) -> list[dt.date]:
        if self.start_date is None or self.days is None:
            return []
        return [self.start_date + dt.timedelta(days=i) for i in range(self.days)]
