"""Train, evaluate, register and gate the two-tower retrieval model; build the day's index.

    python jobs/train_retrieval.py --ds 2026-01-18 --profile demo     # every step, in order

The steps are the tasks of dags/train_retrieval.py:
1. train: positive engagements (click, like, comment, share) of the training days, each with
   the user's history before the impression; early stopping on validation recall@gate_k; an
   MLflow run with settings, window, counts, curves and the model;
2. evaluate: recall@k (and its cold-start slice) on the validation and test days against
   popularity, followees' newest and random, into the same run, a report under reports/;
3. register: a new version of `feedrank-retrieval`, alias `challenger`;
4. promote: alias `champion` if it beats the champion and popularity on validation recall;
5. build_index: the champion's post vectors for the pool servable at the end of ds in a
   FAISS index (recall against exact checked), the post-id map and the active users'
   vectors, published atomically as the day's version (warehouse.artifacts).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from jobs.common import log_settings, run_job
from jobs.settings import Settings
from models import index as ix
from models import registry as reg
from models import retrieval_eval as E
from models import two_tower
from models.dataset import Split, time_split
from models.retrieval_data import History, PostTable, UserTable, epoch_s, post_table, user_table
from models.two_tower import Encoder, Pairs, TwoTower, embed_posts, embed_users, fit
from warehouse.artifacts import RETRIEVAL_INDEX, ArtifactStore
from warehouse.catalog import AUTHORS, ENGAGEMENTS, FOLLOWS, IMPRESSIONS, POSTS, USERS, C
from warehouse.layout import Folder
from warehouse.store import Warehouse

log = logging.getLogger(__name__)

GATE_SPLIT = "val"
MODEL_NAME = "retrieval"  # the logged model's name within its run
PYFUNC_CODE = Path(two_tower.__file__).with_name("retrieval_pyfunc.py")
DAY_S = 86_400


def gate_metric(settings: Settings, scorer: str = E.TWO_TOWER) -> str:
    return f"{GATE_SPLIT}/{scorer}/recall_at_{settings.retrieval.gate_k}"


# --- extract -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Data:
    """Everything the steps read, encoded: tables, engagement history, positives per day."""

    posts: PostTable
    users: UserTable
    history: History
    positives: pd.DataFrame  # one row per engaged impression: request, user/post row, ts, weight
    follows: pd.DataFrame  # user_row, author_id, created_s
    split: Split


def log_days(settings: Settings, ds: str) -> list[str]:
    return [d for d in Warehouse(settings.root.warehouse).partitions(ENGAGEMENTS) if d <= ds]


def load_data(settings: Settings, ds: str) -> Data:
    """Read the raw tables up to ds day by day (Arrow, only the columns used) and encode them."""
    r, t = settings.retrieval, settings.retrieval.tower
    store = Warehouse(settings.root.warehouse)
    days = log_days(settings, ds)
    tr = settings.training
    split = time_split(days, train_days=tr.train_days, val_days=tr.val_days, test_days=tr.test_days)
    posts = store.read_pandas(POSTS, days).drop(columns=[C.DS])
    authors = store.read_pandas(AUTHORS, days[-1])
    post_tab = post_table(posts, authors, t.n_topics, t.author_buckets, t.hashtag_buckets)
    users = user_table(store.read_pandas(USERS, days[-1]), t.user_buckets)
    weights = r.positives.as_dict()
    parts = []
    for day in days:  # one day in memory at a time, then only its positives
        eng = store.read_pandas(ENGAGEMENTS, day, columns=[C.IMPRESSION_ID, C.ACTION, C.EVENT_TS])
        eng = eng[eng[C.ACTION].isin(list(weights))]
        eng = eng.assign(w=eng[C.ACTION].map(weights))
        eng = eng.groupby(C.IMPRESSION_ID).agg(w=("w", "max"), event_ts=(C.EVENT_TS, "min"))
        cols = [C.IMPRESSION_ID, C.REQUEST_ID, C.USER_ID, C.POST_ID, C.SERVED_AT]
        imp = store.read_pandas(IMPRESSIONS, day, columns=cols)
        parts.append(imp.merge(eng.reset_index(), on=C.IMPRESSION_ID).assign(day=day))
    pos = pd.concat(parts, ignore_index=True).sort_values(C.IMPRESSION_ID, kind="stable")
    positives = pd.DataFrame(
        {
            "request": pos[C.REQUEST_ID].to_numpy(),
            "user_row": users.rows(pos[C.USER_ID].to_numpy()),
            "post_row": post_tab.rows(pos[C.POST_ID].to_numpy()),
            "ts": epoch_s(pos[C.SERVED_AT]),
            "event_s": epoch_s(pos["event_ts"]),
            "weight": pos["w"].to_numpy(np.float32),
            "day": pos["day"].to_numpy(),
        }
    )
    positives = positives[(positives.user_row >= 0) & (positives.post_row >= 0)]
    history = History.of(
        positives.user_row.to_numpy(), positives.event_s.to_numpy(), positives.post_row.to_numpy()
    )
    fol = store.read_pandas(FOLLOWS, days[-1], columns=[C.FOLLOWER_ID, C.FOLLOWEE_ID, C.CREATED_AT])
    follows = pd.DataFrame(
        {
            "user_row": users.rows(fol[C.FOLLOWER_ID].to_numpy()),
            "author_id": fol[C.FOLLOWEE_ID].to_numpy(np.int64),
            "created_s": epoch_s(fol[C.CREATED_AT]),
        }
    )
    log.info(
        "retrieval data up to %s: %d posts, %d users, %d positives, split %s",
        ds,
        len(post_tab),
        len(users),
        len(positives),
        json.dumps(split.as_dict()),
    )
    return Data(post_tab, users, history, positives, follows[follows.user_row >= 0], split)


def encoder(data: Data, settings: Settings, model: TwoTower | None = None) -> Encoder:
    cfg = model.cfg if model is not None else settings.retrieval.tower
    return Encoder(data.posts, data.users, data.history, cfg)


def pairs_of(data: Data, days: Sequence[str]) -> Pairs:
    p = data.positives[data.positives.day.isin(list(days))]
    return Pairs(
        p.user_row.to_numpy(np.int64),
        p.post_row.to_numpy(np.int64),
        p.ts.to_numpy(np.int64),
        p.weight.to_numpy(np.float32),
    )


def requests_of(data: Data, days: Sequence[str], settings: Settings) -> E.Requests:
    p = data.positives[data.positives.day.isin(list(days))]
    req = E.requests_from(
        p.request.to_numpy(), p.user_row.to_numpy(), p.ts.to_numpy(), p.post_row.to_numpy()
    )
    return E.sample(req, settings.retrieval.eval_requests, settings.retrieval.tower.seed)


# --- evaluate --------------------------------------------------------------------------------


def _candidates(data: Data, req: E.Requests, window_s: int) -> np.ndarray:
    """Rows of every post servable at some request: created in [first - window, last)."""
    created = data.posts.created_s
    return np.flatnonzero((created < req.ts.max()) & (created >= req.ts.min() - window_s))


def retrieve_all(
    data: Data, req: E.Requests, settings: Settings, model: TwoTower, scorers: Sequence[str]
) -> dict[str, np.ndarray]:
    """(requests, max k) retrieved post rows per scorer."""
    r = settings.retrieval
    window_s = int(r.pool_window_h * 3600)
    cand = _candidates(data, req, window_s)
    created = data.posts.created_s[cand]
    k = max(r.ks)
    out = {}
    for name in scorers:
        if name == E.TWO_TOWER:
            enc = encoder(data, settings, model)
            users = embed_users(model, enc, req.user_row, req.ts)
            scorer = E.vector_scorer(users, embed_posts(model, enc, cand))
        elif name == E.POPULARITY:
            h = data.history
            scorer = E.popularity_scorer(req, cand, created, h.ts, h.post_row, len(data.posts))
        elif name == E.FOLLOWEES:
            f = data.follows[data.follows.created_s < req.ts.min()]  # followed before the day
            scorer = E.followees_scorer(
                req,
                data.posts.author_id[cand],
                created,
                f.user_row.to_numpy(),
                f.author_id.to_numpy(),
            )
        else:
            scorer = E.random_scorer(len(cand), r.tower.seed)
        out[name] = E.retrieve(req, cand, created, scorer, k, window_s)
    return out


def evaluate_split(
    data: Data, settings: Settings, model: TwoTower, split: str, scorers: Sequence[str]
) -> dict[str, float]:
    r = settings.retrieval
    req = requests_of(data, getattr(data.split, split), settings)
    got = retrieve_all(data, req, settings, model, scorers)
    return E.recall_table(req, got, data.posts.created_s, r.ks, int(r.cold_age_h * 3600), split)


# --- steps -----------------------------------------------------------------------------------


def train(settings: Settings, ds: str) -> dict[str, Any]:
    """Fit the towers on the training days, early stopping on validation recall; log the run."""
    log_settings("train_retrieval", settings, ds)
    r = settings.retrieval
    data = load_data(settings, ds)
    pairs = pairs_of(data, data.split.train)
    pool = np.flatnonzero(np.isin(data.posts.created_s // DAY_S, _day_numbers(data.split.train)))
    val_req = requests_of(data, data.split.val, settings)

    def validate(model: TwoTower) -> float:
        got = retrieve_all(data, val_req, settings, model, [E.TWO_TOWER])
        table = E.recall_table(val_req, got, data.posts.created_s, [r.gate_k], 1, GATE_SPLIT)
        return table[gate_metric(settings)]

    result = fit(
        encoder(data, settings), pairs, pool if len(pool) else np.arange(len(data.posts)), validate
    )
    use_tracking(settings)
    with mlflow.start_run(run_name=f"retrieval {settings.profile} {ds}") as run:
        mlflow.set_tags(
            {"feedrank.profile": settings.profile, "feedrank.ds": ds, "feedrank.stage": "retrieval"}
        )
        mlflow.log_params(_flatten(r.model_dump(mode="json"), "retrieval"))
        mlflow.log_params(
            {
                "window.train": ",".join(data.split.train),
                "window.val": ",".join(data.split.val),
                "window.test": ",".join(data.split.test),
            }
        )
        mlflow.log_dict(settings.model_dump(mode="json"), "settings.json")
        mlflow.log_dict(data.split.as_dict(), "split.json")
        mlflow.log_metrics(
            {"pairs/train": float(len(pairs)), "best_epoch": float(result.best_epoch)}
        )
        for step, (loss, val) in enumerate(zip(result.train_loss, result.val_metric, strict=True)):
            mlflow.log_metrics(
                {"curve/train_loss": loss, f"curve/{gate_metric(settings)}": val}, step=step + 1
            )
        with settings.root.scratch("towers") as folder:
            info = log_towers(result.model, folder)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "ds": ds}


def evaluate_run(settings: Settings, trained: Mapping[str, Any]) -> dict[str, Any]:
    """Recall table of the run's model and the baselines on validation and test, into the run."""
    use_tracking(settings)
    data = load_data(settings, trained["ds"])
    model = load_towers(trained["model_uri"])
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        metrics |= evaluate_split(data, settings, model, split, (E.TWO_TOWER, *E.BASELINES))
    table = recall_frame(metrics, settings)
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_table(table, "evaluation/recall.json")
        for split in ("val", "test"):
            mlflow.log_figure(E.recall_figure(table, split), f"evaluation/recall_{split}.png")
        mlflow.log_text(markdown(table), "report.md")
    path = settings.root.report_folder("train_retrieval", trained["ds"]).file("report.md")
    path.write_text(markdown(table) + "\n")
    log.info("retrieval recall (%s):\n%s", path, table.to_string(index=False))
    return {**trained, "gate_metric": metrics[gate_metric(settings)], "report": str(path)}


def register(settings: Settings, evaluated: Mapping[str, Any]) -> dict[str, Any]:
    use_tracking(settings)
    tags = {
        "run_id": evaluated["run_id"],
        "ds": evaluated["ds"],
        gate_metric(settings): f"{evaluated['gate_metric']:.6f}",
    }
    version = reg.register(evaluated["model_uri"], settings.retrieval.registered_model, tags)
    return {**evaluated, "version": version}


def promote(settings: Settings, registered: Mapping[str, Any]) -> dict[str, Any]:
    """Champion if it beats popularity and the champion on validation recall@gate_k."""
    r = settings.retrieval
    use_tracking(settings)
    client = MlflowClient()
    name, version = r.registered_model, registered["version"]
    metrics = client.get_run(registered["run_id"]).data.metrics
    challenger = metrics.get(gate_metric(settings), float("nan"))
    popularity = metrics.get(gate_metric(settings, E.POPULARITY), float("nan"))
    current = reg.champion_version(name)
    champion = None
    if current is not None and current != version:
        data = load_data(settings, registered["ds"])
        model = load_towers(f"models:/{name}@{reg.CHAMPION}")
        champion = evaluate_split(data, settings, model, GATE_SPLIT, [E.TWO_TOWER])[
            gate_metric(settings)
        ]
    decision = reg.decide(
        challenger,
        champion,
        {E.POPULARITY: popularity},
        r.promotion_margin,
        metric=f"validation recall@{r.gate_k}",
        days=client.get_run(registered["run_id"]).data.params["window.val"],
    )
    reason = decision.reason
    if decision.promote:
        reg.set_champion(name, version)
    outcome = "promoted" if decision.promote else "not promoted"
    for key, value in {"feedrank.promotion": outcome, "feedrank.promotion_reason": reason}.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(registered["run_id"], key, value)
    log.info("%s version %s %s: %s", name, version, outcome, reason)
    return {
        **registered,
        "promoted": decision.promote,
        "reason": reason,
        "champion": reg.champion_version(name),
    }


def build_index(settings: Settings, ds: str) -> dict[str, Any]:
    """Index the champion's vectors of the pool servable at the end of ds; publish atomically."""
    r = settings.retrieval
    use_tracking(settings)
    version = reg.champion_version(r.registered_model)
    if version is None:
        raise RuntimeError(f"{r.registered_model} has no champion yet: nothing to index for {ds}")
    model = load_towers(f"models:/{r.registered_model}@{reg.CHAMPION}")
    data = load_data(settings, ds)
    enc = encoder(data, settings, model)
    end = int(pd.Timestamp(ds, tz="UTC").timestamp()) + DAY_S
    created = data.posts.created_s
    pool = np.flatnonzero((created < end) & (created >= end - int(r.pool_window_h * 3600)))
    active = np.unique(data.positives.user_row[data.positives.day == ds].to_numpy())
    imp = Warehouse(settings.root.warehouse).read_pandas(IMPRESSIONS, ds, columns=[C.USER_ID])
    active = np.union1d(active, data.users.rows(imp[C.USER_ID].unique()))
    active = active[active >= 0]
    users = embed_users(model, enc, active, np.full(len(active), end))
    vectors = embed_posts(model, enc, pool)
    rng = np.random.default_rng(r.tower.seed)
    sample = rng.choice(len(users), min(len(users), r.index.recall_queries), replace=False)
    built = ix.build_index(vectors, users[np.sort(sample)], r.gate_k, r.index)
    meta = {
        "ds": ds,
        "model_version": version,
        "kind": built.kind,
        f"recall_at_{built.k}_vs_exact": built.recall,
        "posts": len(pool),
        "users": len(active),
        "dim": int(vectors.shape[1]),
        "build_s": built.build_s,
    }
    ArtifactStore(settings.root.artifacts).publish(
        RETRIEVAL_INDEX,
        ds,
        {
            "index.faiss": ix.to_bytes(built.index),
            "post_ids.npy": _npy(data.posts.post_id[pool]),
            "user_ids.npy": _npy(data.users.user_id[active]),
            "user_vectors.npy": _npy(users),
            "meta.json": json.dumps(meta, indent=2).encode(),
        },
    )
    log.info("published retrieval index ds=%s: %s", ds, meta)
    return meta


@dataclasses.dataclass(frozen=True)
class PublishedIndex:
    """A day's published retrieval artifacts, as the feed precompute reads them."""

    index: Any  # faiss.Index over post vectors
    post_ids: np.ndarray  # (posts,) int64: the post of each index row
    user_ids: np.ndarray  # (users,) int64
    user_vectors: np.ndarray  # (users, dim) float32
    meta: dict[str, Any]


def load_published(settings: Settings, ds: str | None = None) -> PublishedIndex:
    """The index of ds, or the latest one (None); a clear error when there is none."""
    store = ArtifactStore(settings.root.artifacts)
    day = ds or store.latest(RETRIEVAL_INDEX)
    if day is None:
        raise RuntimeError(f"no {RETRIEVAL_INDEX.name} is published yet")

    def npy(name: str) -> np.ndarray:
        return np.load(io.BytesIO(store.read(RETRIEVAL_INDEX, day, name)), allow_pickle=False)

    return PublishedIndex(
        ix.from_bytes(store.read(RETRIEVAL_INDEX, day, "index.faiss")),
        npy("post_ids.npy"),
        npy("user_ids.npy"),
        npy("user_vectors.npy"),
        json.loads(store.read(RETRIEVAL_INDEX, day, "meta.json")),
    )


def run(settings: Settings, ds: str) -> dict[str, Any]:
    """Every step, in order (what the DAG runs as separate tasks)."""
    outcome = promote(settings, register(settings, evaluate_run(settings, train(settings, ds))))
    if outcome["champion"] is not None:
        outcome["index"] = build_index(settings, ds)
    return outcome


# --- helpers ---------------------------------------------------------------------------------


def recall_frame(metrics: Mapping[str, float], settings: Settings) -> pd.DataFrame:
    """One row per (split, scorer): recall@k and the cold-start slice's."""
    rows = []
    for split in ("val", "test"):
        for scorer in (E.TWO_TOWER, *E.BASELINES):
            row: dict[str, Any] = {"split": split, "scorer": scorer}
            for k in settings.retrieval.ks:
                row[f"recall@{k}"] = metrics[f"{split}/{scorer}/recall_at_{k}"]
            for k in settings.retrieval.ks:
                row[f"cold recall@{k}"] = metrics[f"{split}/{scorer}/cold_recall_at_{k}"]
            rows.append(row)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([head, rule, *body])


def _day_numbers(days: Sequence[str]) -> np.ndarray:
    return np.array([int(pd.Timestamp(d, tz="UTC").timestamp()) // DAY_S for d in days])


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def log_towers(model: TwoTower, scratch: Folder) -> mlflow.models.model.ModelInfo:
    """Log the towers into the active run as a pyfunc from code (weights + settings);
    `scratch`: an empty folder their files pass through on the way into the run."""
    reqs = [f"{p}=={importlib.metadata.version(p)}" for p in ("torch", "numpy", "pandas", "mlflow")]
    folder = two_tower.save(model, scratch)
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=str(PYFUNC_CODE),
        artifacts={"towers": str(folder)},
        pip_requirements=[r.replace("+cpu", "") for r in reqs],
    )


def load_towers(model_uri: str) -> TwoTower:
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().towers


def use_tracking(settings: Settings) -> None:
    """MLflow on the data root's tracking store, in the pipeline's experiment."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    local = settings.mlflow.tracking_uri is None
    artifacts = settings.root.mlflow_artifacts if local else None
    reg.use_tracking(settings.tracking_uri, settings.mlflow.experiment, artifacts)


def _flatten(data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out |= _flatten(value, f"{prefix}.{key}")
        else:
            out[f"{prefix}.{key}"] = value
    return out


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
