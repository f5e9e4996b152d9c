"""Benchmark: fitting the LightGBM rankers (models.ranking.gbdt.fit_ranker) at growing row counts.

    .venv/bin/python tests/benchmarks/bench_train.py [--rows 100000 500000 1000000]
    .venv/bin/python tests/benchmarks/bench_train.py --home .feedrank/demo --ds 2026-01-18

Synthetic sizes: every feature of models.ranking.dataset.FEATURES uniform, each action's
probability a
logistic function of two of them (base rates like the demo's), so the trees have signal to
find and early stopping ends where it would on real data. Reports rows read into training
(positives of any action plus sampled negatives), seconds to fit all seven tasks, the trees
they kept, and the peak RSS. With --home: the same on a data root's training examples (the
time split up to --ds), after `make demo`. Prints a table; writes results/bench_train.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_features import PeakMemory

from jobs.common import configure_logging
from jobs.settings import load_settings
from models.ranking.config import TrainingSettings
from models.ranking.dataset import FEATURES, IDS, Examples, feature_frame, load_examples
from models.ranking.gbdt import fit_ranker
from warehouse.catalog import ACTIONS, TRAINING_EXAMPLES, C, label_column
from warehouse.store import Warehouse

RESULTS = Path(__file__).parent / "results"
BASE_RATE = {"click": 0.053, "like": 0.018, "comment": 0.0042, "share": 0.0031}
BASE_RATE |= {"hide": 0.002, "report": 0.0007}


def synthetic(n: int, seed: int, rate: float) -> Examples:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.random(n) for name in FEATURES})
    frame["topic"] = rng.integers(0, 20, n)
    for name in ("media_type", "device", "country", "age_bucket", "gender", "primary_device"):
        frame[name] = None
    frame["media_type"] = rng.choice(["text", "photo", "video", "link"], n)
    for name in IDS:
        frame[name] = rng.integers(0, 1 << 40, n)
    labels = {}
    for a, base in BASE_RATE.items():
        logit = np.log(base / (1 - base)) + 2.0 * (frame["post_click_1d"] - 0.5)
        logit += 1.0 * (frame["ua_eng_share_90d"] - 0.5)
        labels[label_column(a)] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    clicked = labels[label_column("click")] == 1
    labels[C.DWELL_S] = np.where(
        clicked, 10 + 80 * frame["length"] + rng.exponential(20, n), np.nan
    )
    u = rng.random(n)
    keep = u < rate
    for a in ACTIONS:
        keep |= labels[label_column(a)] == 1
    X = feature_frame(frame[keep].reset_index(drop=True))
    return Examples(X, pd.DataFrame(labels)[keep].reset_index(drop=True), u[keep])


def fit(name: str, rows: int, train: Examples, val: Examples, settings: TrainingSettings):
    with PeakMemory() as mem:
        started = time.perf_counter()
        _, history = fit_ranker(train, val, settings)
        seconds = time.perf_counter() - started
    return {
        "data": name,
        "rows": rows,
        "rows_read": len(train),
        "fit_s": round(seconds, 1),
        "trees": sum(history.best_iteration.values()),
        "peak_rss_mib": round(mem.peak / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", type=int, default=[100_000, 500_000, 1_000_000])
    parser.add_argument("--home", help="a data root with training examples (after make demo)")
    parser.add_argument("--ds", help="with --home: the last day of the split")
    parser.add_argument("--profile", default="demo")
    args = parser.parse_args()
    configure_logging()
    settings = TrainingSettings()
    results = []
    for n in args.rows:
        val = synthetic(max(n // 10, 20_000), 2, 1.0)
        results.append(fit("synthetic", n, synthetic(n, 1, settings.negative_rate), val, settings))
    if args.home:
        from jobs import train_rankers

        full = load_settings(args.profile, {"home": args.home})
        store = Warehouse(full.root.warehouse)
        split = train_rankers.split_days(full, args.ds)
        train, _ = load_examples(store, split.train, negative_rate=0.1)
        val, _ = load_examples(store, split.val)
        rows = sum(store.info(TRAINING_EXAMPLES, d).rows for d in split.train)
        results.append(fit(f"{args.profile} {split.train[0]}..", rows, train, val, full.training))
    print(f"{'data':<24} {'rows':>10} {'read':>9} {'fit s':>7} {'trees':>6} {'peak MiB':>9}")
    for r in results:
        print(
            f"{r['data']:<24} {r['rows']:>10,} {r['rows_read']:>9,} {r['fit_s']:>7} "
            f"{r['trees']:>6} {r['peak_rss_mib']:>9}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_train.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
