"""Two-tower retrieval: a user tower and a post tower whose dot product approximates engagement.

Both towers end in an L2-normalised vector, so a FAISS inner-product index over post vectors
ranks by cosine. Training is a sampled softmax over each batch's positives (in-batch
negatives) with the logQ correction: a popular post appears as a negative in many batches, so
its logit is lowered by log of its expected count among a batch's candidates (batch size x
its share of the training pairs); without it the model learns to push popular posts down
beyond what the data says (Yi et al., RecSys 2019). Optional uniform random negatives from
the pool are corrected the same way (their expected count is M / pool size).

Deterministic on CPU: seeded initialisation and batch order, deterministic algorithms and a
fixed thread count.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from models.retrieval.config import TowerSettings
from models.retrieval.data import CAT_SIZES, MAX_HASHTAGS, History, PostTable, UserTable
from warehouse.layout import Folder

log = logging.getLogger(__name__)

_N_MEDIA = 5  # MEDIA_TYPES + unknown
_POST_DENSE = 4  # PostTable.dense columns


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Training pairs: a user engaged with a post at a time, with a weight."""

    user_row: np.ndarray  # (P,) int64
    post_row: np.ndarray  # (P,) int64
    ts: np.ndarray  # (P,) int64 epoch seconds (the impression's serving time)
    weight: np.ndarray  # (P,) float32

    def __len__(self) -> int:
        return len(self.user_row)


class _Content(nn.Module):
    """Topic, hashtags and author of posts -> one vector (the history and post encoders)."""

    def __init__(self, cfg: TowerSettings):
        super().__init__()
        d = cfg.id_dim
        self.topic = nn.Embedding(cfg.n_topics, d)
        self.tags = nn.Embedding(cfg.hashtag_buckets + 1, d, padding_idx=0)
        self.author = nn.Embedding(cfg.author_buckets + 1, d)

    def forward(self, topic, tags, author):  # (...,), (..., H), (...,) -> (..., 3d)
        mask = (tags > 0).unsqueeze(-1).float()
        tag_mean = (self.tags(tags) * mask).sum(-2) / mask.sum(-2).clamp(min=1.0)
        return torch.cat([self.topic(topic), tag_mean, self.author(author)], dim=-1)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class TwoTower(nn.Module):
    def __init__(self, cfg: TowerSettings):
        super().__init__()
        d = cfg.id_dim
        self.cfg = cfg
        self.post_content = _Content(cfg)
        self.media = nn.Embedding(_N_MEDIA, d)
        self.post_mlp = _mlp(4 * d + _POST_DENSE, cfg.hidden, cfg.dim)
        self.history_content = _Content(cfg)
        self.attention = nn.Linear(3 * d, 1) if cfg.pooling == "attention" else None
        self.user = nn.Embedding(cfg.user_buckets + 1, d)
        self.cats = nn.ModuleList(nn.Embedding(n, d) for n in CAT_SIZES)
        self.user_mlp = _mlp(d * (1 + len(CAT_SIZES)) + 3 * d + 1, cfg.hidden, cfg.dim)

    def post_vectors(self, x: dict[str, torch.Tensor]) -> torch.Tensor:  # (N, dim)
        content = self.post_content(x["topic"], x["hashtags"], x["author"])
        h = torch.cat([content, self.media(x["media"]), x["dense"]], dim=-1)
        return nn.functional.normalize(self.post_mlp(h), dim=-1)

    def user_vectors(self, x: dict[str, torch.Tensor]) -> torch.Tensor:  # (B, dim)
        hist = self.history_content(x["h_topic"], x["h_tags"], x["h_author"])  # (B, L, 3d)
        mask = x["h_mask"].unsqueeze(-1)  # (B, L, 1)
        if self.attention is None:
            pooled = (hist * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        else:
            score = self.attention(hist).masked_fill(mask == 0, -1e9)
            pooled = (torch.softmax(score, dim=1) * hist * mask).sum(1)
        cats = [emb(x["cats"][:, i]) for i, emb in enumerate(self.cats)]
        h = torch.cat([self.user(x["user"]), *cats, pooled, x["activity"]], dim=-1)
        return nn.functional.normalize(self.user_mlp(h), dim=-1)


class Encoder:
    """Turns table rows into tower inputs; holds the tables and the history."""

    def __init__(self, posts: PostTable, users: UserTable, history: History, cfg: TowerSettings):
        self.posts, self.users, self.history, self.cfg = posts, users, history, cfg

    def post_inputs(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        p = self.posts
        return {
            "topic": torch.from_numpy(p.topic[rows]),
            "hashtags": torch.from_numpy(p.hashtags[rows]),
            "author": torch.from_numpy(p.author[rows]),
            "media": torch.from_numpy(p.media[rows]),
            "dense": torch.from_numpy(p.dense[rows]),
        }

    def user_inputs(self, user_rows: np.ndarray, times: np.ndarray) -> dict[str, torch.Tensor]:
        """The user tower's inputs at each time: history strictly before it."""
        hist, count = self.history.before(user_rows, times, self.cfg.history_len)
        safe = np.maximum(hist, 0)  # (B, L); masked below where -1
        p, u = self.posts, self.users
        return {
            "user": torch.from_numpy(u.bucket[user_rows]),
            "cats": torch.from_numpy(u.cats[user_rows]),
            "activity": torch.from_numpy(np.log1p(count).astype(np.float32)[:, None] / 5),
            "h_topic": torch.from_numpy(p.topic[safe]),
            "h_tags": torch.from_numpy(p.hashtags[safe].reshape(*safe.shape, MAX_HASHTAGS)),
            "h_author": torch.from_numpy(p.author[safe]),
            "h_mask": torch.from_numpy((hist >= 0).astype(np.float32)),
        }


def seed_everything(cfg: TowerSettings) -> None:
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)


@torch.no_grad()
def embed_posts(model: TwoTower, enc: Encoder, rows: np.ndarray, batch: int = 8192) -> np.ndarray:
    """(len(rows), dim) float32 post vectors."""
    model.eval()
    out = [
        model.post_vectors(enc.post_inputs(rows[i : i + batch])).numpy()
        for i in range(0, len(rows), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.cfg.dim), np.float32)


@torch.no_grad()
def embed_users(
    model: TwoTower, enc: Encoder, user_rows: np.ndarray, times: np.ndarray, batch: int = 8192
) -> np.ndarray:
    """(len(user_rows), dim) float32 user vectors, each from its history before its time."""
    model.eval()
    out = [
        model.user_vectors(enc.user_inputs(user_rows[i : i + batch], times[i : i + batch])).numpy()
        for i in range(0, len(user_rows), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.cfg.dim), np.float32)


def sampled_softmax_loss(
    user: torch.Tensor,  # (B, dim)
    pos: torch.Tensor,  # (B, dim)
    pos_rows: torch.Tensor,  # (B,) post rows, to mask a post that is positive twice in a batch
    log_q: torch.Tensor,  # (B,) log expected count of each positive among the candidates
    weight: torch.Tensor,  # (B,)
    temperature: float,
    neg: torch.Tensor | None = None,  # (M, dim) random negatives
    neg_rows: torch.Tensor | None = None,  # (M,)
    neg_log_q: float = 0.0,
) -> torch.Tensor:
    logits = user @ pos.T / temperature - log_q[None, :]  # (B, B)
    same = pos_rows[:, None] == pos_rows[None, :]
    eye = torch.eye(len(pos_rows), dtype=torch.bool)
    logits = logits.masked_fill(same & ~eye, float("-inf"))  # a duplicate is not a negative
    if neg is not None:
        extra = user @ neg.T / temperature - neg_log_q  # (B, M)
        extra = extra.masked_fill(pos_rows[:, None] == neg_rows[None, :], float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    target = torch.arange(len(pos_rows))
    loss = nn.functional.cross_entropy(logits, target, reduction="none")
    return (loss * weight).sum() / weight.sum()


@dataclasses.dataclass
class FitResult:
    model: TwoTower
    train_loss: list[float]
    val_metric: list[float]
    best_epoch: int


def fit(
    enc: Encoder,
    pairs: Pairs,
    pool_rows: np.ndarray,
    validate: Callable[[TwoTower], float] | None = None,
) -> FitResult:
    """Train the towers on the pairs; keep the epoch with the best validation metric.

    `pool_rows`: post rows random negatives are drawn from. `validate` scores a model (higher
    is better, e.g. validation recall@k); without it every epoch runs and the last is kept.
    """
    cfg = enc.cfg
    if len(pairs) < 2:
        raise ValueError(f"two-tower training needs at least 2 positive pairs, got {len(pairs)}")
    seed_everything(cfg)
    rng = np.random.default_rng(cfg.seed)
    model = TwoTower(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    batch = min(cfg.batch_size, len(pairs))
    freq = np.bincount(pairs.post_row, minlength=len(enc.posts)) / len(pairs)
    log_count = np.log(np.maximum(freq * batch, 1e-12)).astype(np.float32)  # (N,)
    neg_log_q = math.log(max(cfg.random_negatives, 1) / max(len(pool_rows), 1))
    best, best_state, best_epoch, losses, vals, stale = -np.inf, None, 0, [], [], 0
    for epoch in range(cfg.max_epochs):
        model.train()
        order = rng.permutation(len(pairs))
        total, n_batches = 0.0, 0
        for start in range(0, len(order) - batch + 1, batch):  # full batches: equal softmax width
            idx = order[start : start + batch]
            rows = pairs.post_row[idx]
            user = model.user_vectors(enc.user_inputs(pairs.user_row[idx], pairs.ts[idx]))
            pos = model.post_vectors(enc.post_inputs(rows))
            neg = neg_rows = None
            if cfg.random_negatives:
                neg_rows = pool_rows[rng.integers(0, len(pool_rows), cfg.random_negatives)]
                neg = model.post_vectors(enc.post_inputs(neg_rows))
                neg_rows = torch.from_numpy(neg_rows)
            log_q = torch.from_numpy(
                log_count[rows] if cfg.logq else np.zeros(len(rows), np.float32)
            )
            loss = sampled_softmax_loss(
                user,
                pos,
                torch.from_numpy(rows),
                log_q,
                torch.from_numpy(pairs.weight[idx]),
                cfg.temperature,
                neg,
                neg_rows,
                neg_log_q if cfg.logq else 0.0,
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n_batches = total + float(loss.detach()), n_batches + 1
        losses.append(total / max(n_batches, 1))
        val = validate(model) if validate is not None else float(-losses[-1])
        vals.append(val)
        log.info("two-tower epoch %d: loss %.4f, validation %.4f", epoch + 1, losses[-1], val)
        if val > best:
            best, best_epoch, stale = val, epoch + 1, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("early stop after epoch %d (best %d)", epoch + 1, best_epoch)
                break
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, losses, vals, best_epoch)


def save(model: TwoTower, folder: Folder) -> Folder:
    """The weights (a plain state dict: loads with weights_only) and the settings they fit."""
    torch.save(model.state_dict(), folder.writable("towers.pt"))
    folder.writable("towers.json").write_text(model.cfg.model_dump_json(indent=2))
    return folder


def load(folder: Folder) -> TwoTower:
    cfg = TowerSettings.model_validate_json(folder.file("towers.json").read_text())
    model = TwoTower(cfg)
    model.load_state_dict(torch.load(folder.file("towers.pt"), weights_only=True))
    return model.eval()
