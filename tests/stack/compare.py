"""Two data roots compared table-day by table-day (tests/stack/equality.py and e2e.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from warehouse.catalog import Layer
from warehouse.digest import column_differences, published_digests
from warehouse.digest import producer_table as entry
from warehouse.layout import DataRoot
from warehouse.store import Warehouse

# A table-day whose bytes differ passes when every float differs by at most this, relative:
# a sum of doubles depends on the order its terms arrive in, which a shuffle between
# executors does not fix (a few ulps, ~1e-16); anything else must be identical.
REL_TOL = 1e-12


@dataclasses.dataclass
class Comparison:
    both: list[str]  # layer/table/ds=D held by both roots
    identical: list[str]  # ... with bit-identical content
    columns: dict[str, list[dict]]  # the others: which columns differ, by how much
    beyond: list[str]  # table-days or columns beyond the tolerance
    only_first: list[str]
    only_second: list[str]
    rows: dict[str, int]


def compare_roots(first: Path, second: Path, layers=tuple(Layer), echo=print) -> Comparison:
    wa, wb = (Warehouse(DataRoot(h).warehouse) for h in (first, second))
    a, b = published_digests(wa, layers), published_digests(wb, layers)
    both = sorted(a.keys() & b.keys())
    out = Comparison(both, [k for k in both if a[k] == b[k]], {}, [], [], [], {})
    out.only_first, out.only_second = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    out.rows = {k: a[k].rows for k in both}
    for key in both:
        if a[key] == b[key]:
            continue
        layer, name, ds = key.split("/")
        tab = entry(name, Layer(layer))
        day = ds.removeprefix("ds=")
        try:
            diffs = column_differences(wa.read_arrow(tab, day), wb.read_arrow(tab, day), tab.key)
        except ValueError as err:  # other keys or columns: no tolerance applies
            out.beyond.append(f"{key}: {err}")
            continue
        out.columns[key] = [dataclasses.asdict(d) for d in diffs]
        for d in diffs:
            within = d.max_rel is not None and d.max_rel <= REL_TOL
            echo(
                f"  {key}: {d.column}: {d.rows} rows differ, max abs {d.max_abs:.3g}, max rel "
                f"{d.max_rel:.3g} ({'within' if within else 'BEYOND'} {REL_TOL:g})"
                if d.max_rel is not None
                else f"  {key}: {d.column}: {d.rows} rows differ (not a float: BEYOND)"
            )
            if not within:
                out.beyond.append(f"{key}: {d.column}")
    return out
