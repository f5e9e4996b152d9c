"""What a contract run returns, and the error a broken contract raises."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from warehouse.catalog import table


@dataclasses.dataclass(frozen=True)
class CheckFailure:
    """One failed expectation."""

    table: str  # catalog name, e.g. "engagements"
    column: str | None  # the column(s) the rule is about; None for a table-level rule
    expectation: str  # GX expectation type, e.g. "expect_column_values_to_not_be_null"
    unexpected_count: int | None  # rows that broke it; None for a table-level rule or an error
    sample: tuple[str, ...]  # a few offending rows ("key=value ..."), or what was observed
    rule: str = ""  # the rule in words, e.g. "event_ts > its impression's served_at"

    def describe(self, ds: str) -> str:
        """One line naming table, ds, column, expectation, rule, count and sample rows."""
        where = f"column {self.column}" if self.column else "table"
        seen = "; ".join(self.sample)
        if self.unexpected_count is not None:
            seen = f"{self.unexpected_count} unexpected, e.g. [{seen}]"
        head = f"{qualified(self.table)} ds={ds}: {where} failed {self.expectation}"
        return f"{head} ({self.rule}): {seen}"


@dataclasses.dataclass(frozen=True)
class ContractReport:
    """The outcome of one table's contract on one partition."""

    table: str  # catalog name
    ds: str  # the partition checked, YYYY-MM-DD
    n_rows: int  # rows in the partition
    n_checks: int  # expectations run
    failures: tuple[CheckFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        """A header, then one line per failed check."""
        head = f"{qualified(self.table)} ds={self.ds} broke {len(self.failures)} of "
        lines = [f"{head}{self.n_checks} checks ({self.n_rows} rows):"]
        return "\n".join(lines + [f"  {f.describe(self.ds)}" for f in self.failures])


class DataContractError(Exception):
    """Partitions broke their contracts; the message has one line per failed check."""

    def __init__(self, reports: Iterable[ContractReport]):
        self.reports = [r for r in reports if not r.ok]
        self.failures: list[CheckFailure] = [f for r in self.reports for f in r.failures]
        super().__init__("\n".join(r.describe() for r in self.reports))


def enforce(report: ContractReport) -> None:
    """Raise DataContractError if the partition broke its contract."""
    enforce_all([report])


def enforce_all(reports: Iterable[ContractReport]) -> None:
    """Raise one DataContractError naming every failed check of every report, if any."""
    reports = list(reports)
    if not all(r.ok for r in reports):
        raise DataContractError(reports)


def qualified(table_name: str) -> str:
    """The name a message gives a table: layer.name, e.g. raw.engagements."""
    return table(table_name).qualified
