"""models.evaluation.report.kinds_summary: several kinds' logged metrics side by side; to_html: a
report
as one HTML page with its figures embedded."""

from __future__ import annotations

import base64
import re

import pandas as pd

from models.evaluation.markdown import markdown
from models.evaluation.report import kinds_summary, to_html
from warehouse.layout import Folder

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


MIND_RUN = {  # a real log's run: MIND metrics with intervals, no dwell, no oracle
    "test/model/click/auc": 0.68,
    "test/model/click/nce": 0.95,
    "test/popularity/click/auc": 0.66,
    "test/model/value/ndcg_at_10": 0.31,
    "test/model/click/group_auc": 0.573,
    "test/model/click/group_auc_lo": 0.561,
    "test/model/click/group_auc_hi": 0.585,
    "test/popularity/click/group_auc": 0.595,
    "test/model/click/ndcg_at_10": 0.316,
    "test/popularity/click/ndcg_at_10": 0.326,
}


def test_the_mind_protocol_rows_with_intervals_and_no_empty_dwell_row():
    lines = kinds_summary({"gbdt": MIND_RUN}, "test", 10).splitlines()
    assert lines[0] == "| task | metric | gbdt | best baseline |"
    assert "| click | mind_group_auc | 0.573 [0.561, 0.585] | popularity 0.595 |" in lines
    assert "| click | mind_ndcg_at_10 | 0.316 | popularity 0.326 |" in lines  # no interval
    assert not [line for line in lines if line.startswith("| dwell")]


def test_the_report_shows_the_mind_table_and_no_empty_dwell_table():
    from test_evaluate import WEIGHTS, frame_and_predictions

    from models.evaluation.evaluate import evaluate
    from models.evaluation.report import format_report

    frame, predicted, uncorrected = frame_and_predictions(n_requests=50)
    frame["dwell_s"] = float("nan")  # MIND records no dwell
    ev = evaluate(frame, predicted, uncorrected, WEIGHTS, oracle=False, n_boot=100)
    split = {"train": ["2019-11-09"], "val": ["2019-11-10"], "test": ["2019-11-11"]}
    text = format_report("MIND", "run", split, 0.1, {"test": ev, "val": ev}, figures=set())
    assert "## test: MIND protocol (clicks per request)" in text
    assert "| scorer | group_auc | mrr | ndcg_at_5 | ndcg_at_10 | n_requests | n_clicks |" in text
    model = ev.mind.set_index("scorer").loc["model"]
    assert f"| model | {model['group_auc']:.4f} [{model['group_auc_lo']:.4f}, " in text
    assert "dwell" not in text


def _png(folder: Folder, name: str, value: float) -> bytes:
    from matplotlib.figure import Figure

    from models.evaluation.plots import save_figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().bar(["a"], [value])
    return save_figure(fig, folder.writable(name)).read_bytes()


def test_the_html_report_embeds_its_figures_and_renders_its_tables(tmp_path):
    folder = Folder(tmp_path)
    linked = _png(folder, "calibration/test.png", 1.0)
    unlinked = _png(folder, "ab/daily_lift.png", 2.0)  # logged, not linked by the report
    table = markdown(pd.DataFrame({"task": ["click"], "auc": [0.7123456]}))
    report = f"# ranker tiny\n\n![calibration, test](calibration/test.png)\n\n{table}\n<b>x</b>\n"
    page = to_html(report, folder)
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    # The linked figure where the report links it, then the unlinked one: both, byte for byte.
    assert [base64.b64decode(i) for i in images] == [linked, unlinked]
    assert 'alt="calibration, test"' in page and 'alt="ab/daily_lift.png"' in page
    assert "calibration/test.png" not in page.replace('alt="calibration, test"', "")
    assert "<title>ranker tiny</title>" in page and "<h1>ranker tiny</h1>" in page
    assert "<td>click</td>" in page and "<td>0.7123</td>" in page  # a table, not pipes
    assert "<b>" not in page and "&lt;b&gt;" in page  # raw HTML is escaped


def test_a_link_to_a_missing_figure_stays_a_link(tmp_path):
    page = to_html("![gone](gone.png)\n", Folder(tmp_path))
    assert '<img src="gone.png" alt="gone"' in page and "base64" not in page
