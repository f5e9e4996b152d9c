"""The multi-task deep ranker's network (models.ranking.dnn.ranker wraps it as a ranker).

    fields   = hashed id embeddings, categorical embeddings, normalised numbers,
               the history pooled by DIN attention against the candidate (when present)
    x        = interaction(fields)                 MLP (identity here), DCN-v2 or field attention
    h_t      = bottom(x)                           shared, or MMoE: experts mixed by a gate per task
    logit_a  = head_a(h_a) + wide_a(crosses) + position_tower_a(position, source)
    dwell_s  = dwell_scale * softplus(head_dwell(h_dwell))          E[dwell | click] >= 0

The position tower is the debiasing: it explains the slot's effect in training, and scoring
feeds it the serving position and source, so every candidate gets the same slot's offset.
"""

from __future__ import annotations

import torch
from torch import nn

from models.ranking.dnn.config import DnnSettings
from models.ranking.dnn.inputs import categorical_sizes
from warehouse.catalog import ACTIONS, IMPRESSION_SOURCES, MEDIA_TYPES

N_ACTIONS = len(ACTIONS)
N_TASKS = N_ACTIONS + 1  # the actions and dwell


def _mlp(n_in: int, widths: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(n_in, w), nn.ReLU(), nn.Dropout(dropout)]
        n_in = w
    return nn.Sequential(*layers)


class CrossNet(nn.Module):
    """DCN-v2 cross layers: x_{l+1} = x0 * (W_l x_l + b_l) + x_l."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, D)
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class FieldAttention(nn.Module):
    """One block of multi-head self-attention over feature fields (AutoInt), residual."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"cat_dim {dim} must be a multiple of attention_heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # (B, F, d) -> (B, F * d)
        b, n, d = f.shape
        q, k, v = self.qkv(f).reshape(b, n, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, F, d / heads)
        w = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        mixed = (w @ v).transpose(1, 2).reshape(b, n, d)
        return self.norm(f + self.out(mixed)).reshape(b, n * d)


class HistoryAttention(nn.Module):
    """DIN: the viewer's engaged posts (topic, author, media), each weighted by its relevance
    to the candidate (in 0..1) and summed; padding weighs 0, an empty history pools to 0."""

    def __init__(self, cfg: DnnSettings):
        super().__init__()
        d = cfg.cat_dim
        self.topic = nn.Embedding(cfg.topic_buckets + 1, d, padding_idx=0)
        self.author = nn.Embedding(cfg.author_buckets + 1, d, padding_idx=0)
        self.media = nn.Embedding(len(MEDIA_TYPES) + 1, d, padding_idx=0)
        self.score = nn.Sequential(nn.Linear(12 * d, 32), nn.ReLU(), nn.Linear(32, 1))

    def embed(self, topic, author, media) -> torch.Tensor:  # (...,) x3 -> (..., 3d)
        return torch.cat([self.topic(topic), self.author(author), self.media(media)], dim=-1)

    def forward(self, query, h_topic, h_author, h_media) -> torch.Tensor:  # -> (B, 3d)
        keys = self.embed(h_topic, h_author, h_media)  # (B, L, 3d)
        mask = ((h_topic > 0) | (h_author > 0) | (h_media > 0)).unsqueeze(-1)  # (B, L, 1)
        q = query.unsqueeze(1).expand_as(keys)
        score = self.score(torch.cat([q, keys, q - keys, q * keys], dim=-1))  # (B, L, 1)
        # DIN's weights are not normalised over the history: how much of it matches the
        # candidate stays visible in the pooled vector's size.
        weight = torch.sigmoid(score) * mask
        return (weight * keys).sum(dim=1)


class DnnNet(nn.Module):
    def __init__(self, cfg: DnnSettings, n_numeric: int, history_len: int, debias: bool):
        super().__init__()
        self.cfg, self.history_len, self.debias = cfg, history_len, debias
        self.n_numeric = n_numeric
        d = cfg.cat_dim
        sizes = list(categorical_sizes(cfg).values())
        names = list(categorical_sizes(cfg))
        self.topic_field, self.media_field = names.index("topic"), names.index("media_type")
        offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
        self.register_buffer("cat_offsets", offsets, persistent=False)
        self.cats = nn.Embedding(sum(sizes), d)
        self.ids = nn.ModuleList(
            nn.Embedding(n + 1, dim)
            for n, dim in (
                (cfg.user_buckets, cfg.user_dim),
                (cfg.author_buckets, cfg.author_dim),
                (cfg.post_buckets, cfg.post_dim),
            )
        )
        id_dims = (cfg.user_dim, cfg.author_dim, cfg.post_dim)
        self.history = HistoryAttention(cfg) if history_len and cfg.history_attention else None
        field_dims = [*id_dims, *([d] * len(sizes)), n_numeric]
        if self.history is not None:
            field_dims.append(3 * d)
        if cfg.interaction == "attention":  # every field projected to d, then mixed
            self.project = nn.ModuleList(
                nn.Identity() if n == d else nn.Linear(n, d) for n in field_dims
            )
            self.interaction: nn.Module = FieldAttention(d, cfg.attention_heads)
            width = d * len(field_dims)
        else:
            width = sum(field_dims)
            self.interaction = (
                CrossNet(width, cfg.cross_layers) if cfg.interaction == "dcn" else nn.Identity()
            )
        n_bottoms = cfg.experts if cfg.bottom == "mmoe" else 1
        self.bottoms = nn.ModuleList(_mlp(width, cfg.hidden, cfg.dropout) for _ in range(n_bottoms))
        self.gates = (
            nn.ModuleList(nn.Linear(width, cfg.experts) for _ in range(N_TASKS))
            if cfg.bottom == "mmoe"
            else None
        )
        h = cfg.hidden[-1] if cfg.hidden else width
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(h, cfg.head_hidden), nn.ReLU(), nn.Linear(cfg.head_hidden, 1))
            if cfg.head_hidden
            else nn.Linear(h, 1)
            for _ in range(N_TASKS)
        )
        self.wide = nn.Embedding(cfg.wide_buckets + 1, N_ACTIONS)
        nn.init.zeros_(self.wide.weight)  # the wide part starts neutral and learns offsets
        self.position = nn.Embedding(cfg.max_position + 1, d)
        self.source = nn.Embedding(len(IMPRESSION_SOURCES) + 1, d)
        self.bias_tower = nn.Sequential(nn.Linear(2 * d, 16), nn.ReLU(), nn.Linear(16, N_ACTIONS))
        self.register_buffer("dwell_scale", torch.tensor(1.0))

    def fields(self, num, cat, ids, history) -> list[torch.Tensor]:
        cats = self.cats(cat + self.cat_offsets)  # (B, n_cat, d)
        out = [emb(ids[:, i]) for i, emb in enumerate(self.ids)]
        out += [*cats.unbind(1), num]
        if self.history is not None:
            query = self.history.embed(
                cat[:, self.topic_field], ids[:, 1], cat[:, self.media_field]
            )
            out.append(self.history(query, *history))
        return out

    def forward(self, num, cat, ids, wide, pos, src, *history):
        """num (B, n_numeric) float, cat (B, n_cat), ids (B, 3), wide (B, n_cross), pos (B,),
        src (B,) int64; history: h_topic, h_author, h_media (B, L) int64, 0 = padding.
        Returns the action logits (B, N_ACTIONS) and E[dwell | click] in seconds (B,)."""
        fields = self.fields(num, cat, ids, history)
        if self.cfg.interaction == "attention":
            stacked = torch.stack([p(f) for p, f in zip(self.project, fields, strict=True)], 1)
            x = self.interaction(stacked)
        else:
            x = self.interaction(torch.cat(fields, dim=-1))  # (B, width)
        experts = [bottom(x) for bottom in self.bottoms]
        if self.gates is None:
            per_task = experts * N_TASKS
        else:
            stack = torch.stack(experts, dim=1)  # (B, experts, h)
            per_task = [
                (torch.softmax(g(x), dim=-1).unsqueeze(-1) * stack).sum(1) for g in self.gates
            ]
        out = torch.cat([head(t) for head, t in zip(self.heads, per_task, strict=True)], 1)
        logits = out[:, :N_ACTIONS]  # (B, N_ACTIONS)
        if self.cfg.wide_crosses:  # a Python condition: the exported graph keeps it
            logits = logits + self.wide(wide).sum(dim=1)
        if self.debias:
            logits = logits + self.bias_tower(torch.cat([self.position(pos), self.source(src)], -1))
        dwell = self.dwell_scale * nn.functional.softplus(out[:, N_ACTIONS])  # (B,)
        return logits, dwell
