"""models.evaluation.report.kinds_summary: several kinds' logged metrics side by side."""

from __future__ import annotations

from models.evaluation.report import kinds_summary

GBDT = {
    "test/model/click/auc": 0.70,
    "test/model/click/nce": 0.90,
    "test/oracle/click/auc": 0.80,
    "test/popularity/click/auc": 0.60,
    "test/reverse_chron/click/auc": 0.55,
    "test/model/value/ndcg_at_10": 0.71,
    "test/popularity/value/ndcg_at_10": 0.62,
    "test/model/dwell/mae": 20.0,
    "test/constant/dwell/mae": 30.0,
}
ENSEMBLE = {**GBDT, "test/model/click/auc": 0.72, "test/model/value/ndcg_at_10": 0.73}


def test_kinds_side_by_side_with_the_oracle_and_the_best_baseline():
    lines = kinds_summary({"gbdt": GBDT, "ensemble": ENSEMBLE}, "test", 10).splitlines()
    assert lines[0] == "| task | metric | gbdt | ensemble | oracle | best baseline |"
    assert "| click | auc | 0.7 | 0.72 | 0.8 | popularity 0.6 |" in lines
    assert "| value | ndcg_at_10 | 0.71 | 0.73 |  | popularity 0.62 |" in lines
    assert "| dwell | mae | 20 | 20 |  | constant 30 |" in lines
    # Only the actions some run logged: no like row.
    assert not [line for line in lines if line.startswith("| like")]


def test_a_real_log_has_no_oracle_column():
    real = {k: v for k, v in GBDT.items() if "/oracle/" not in k}
    assert "oracle" not in kinds_summary({"gbdt": real}, "test", 10).splitlines()[0]
