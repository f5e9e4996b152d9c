"""A DataFrame as a Markdown table: every report's tables (training, feeds, A/B, gap, retrieval)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table; floats to 4 significant digits, NaN as an empty cell."""

    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([head, rule, *body])
