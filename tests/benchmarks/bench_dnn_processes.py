"""Benchmark: the deep ranker trained by one process and by several together
(`training.dnn.processes`, PySpark's TorchDistributor), on a data root's training examples.

    .venv/bin/python tests/benchmarks/bench_dnn_processes.py --home ROOT --ds DAY [--processes 2]
    FEEDRANK__SPARK__MASTER=spark://127.0.0.1:7077 .venv/bin/python tests/benchmarks/...

The time split up to --ds, as train_rankers makes it. Each run: how many processes and where
(beside the driver on a local master, one per executor task on a cluster), its epochs and
rows trained, fit seconds, and on the test days each action's AUC and the value NDCG@k, with
its difference from the one-process model. Prints a table; writes
results/bench_dnn_processes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="a data root with training examples")
    parser.add_argument("--ds", required=True, help="the training day (its split)")
    parser.add_argument("--profile", help="the root's profile (default: the one it records)")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    os.environ["FEEDRANK_HOME"] = str(Path(args.home).resolve())
    profile = args.profile or (Path(args.home) / "profile").read_text().strip()

    from jobs.common import configure_logging
    from jobs.settings import load_settings
    from jobs.spark import get_spark
    from jobs.train_rankers import split_days
    from models.evaluation.evaluate import MODEL, VALUE, evaluate_days
    from models.ranking.dnn.distributed import fit_dnn_distributed
    from models.ranking.dnn.train import fit_dnn
    from warehouse.layout import Folder

    configure_logging()
    settings = load_settings(profile)
    store, split = settings.open_warehouse(), split_days(settings, args.ds)
    master = get_spark(settings.spark).sparkContext.master
    rows = []
    for n in (1, args.processes):
        dnn = settings.training.dnn.model_copy(update={"processes": n})
        t = settings.training.model_copy(update={"dnn": dnn})
        folder = Folder(Path(tempfile.mkdtemp(prefix=f"dnn-{n}-")))
        started = time.perf_counter()
        if n == 1:
            ranker, history = fit_dnn(
                store, split.train, split.val, t, folder, settings.recorded_tasks
            )
        else:
            ranker, history = fit_dnn_distributed(
                store,
                split.train,
                split.val,
                t,
                folder,
                settings.recorded_tasks,
                processes=n,
                local_mode=master.startswith("local"),
            )
        seconds = time.perf_counter() - started
        ev = evaluate_days(
            store,
            ranker,
            split.test,
            t.value,
            k=t.ranking_k,
            oracle=settings.has_truth,
            n_boot=100,
        )
        model = ev.tasks[ev.tasks["scorer"] == MODEL].set_index("task")["auc"]
        ndcg = ev.ranking.set_index("scorer").loc[MODEL, f"ndcg_at_{t.ranking_k}"]
        row = {
            "processes": n,
            "where": "this process"
            if n == 1
            else ("beside the driver" if master.startswith("local") else f"executors of {master}"),
            "epochs": len(history.val_metric),
            "best_epoch": history.best_epoch,
            "rows_trained": sum(history.rows_trained),
            "fit_s": round(seconds, 1),
            **{f"{a}_auc": round(float(v), 4) for a, v in model.items() if a != VALUE},
            f"{VALUE}_ndcg_at_{t.ranking_k}": round(float(ndcg), 4),
        }
        rows.append(row)
    table = pd.DataFrame(rows)
    metrics = [c for c in table.columns if c.endswith("_auc") or "_ndcg_" in c]
    diff = (table[metrics].iloc[-1] - table[metrics].iloc[0]).round(4)
    print(table.to_string(index=False))
    print(f"\n{args.processes} processes minus 1, on the test days {list(split.test)}:")
    print(diff.to_string())
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_dnn_processes.json"
    out.write_text(
        json.dumps(
            {
                "home": args.home,
                "ds": args.ds,
                "split": split.as_dict(),
                "master": master,
                "runs": rows,
                "difference": diff.to_dict(),
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
