"""The multi-task deep ranker as a ranker: the interface of models.ranking.gbdt.Ranker.

    ranker, history = models.ranking.dnn.train.fit_dnn(store, train_days, val_days, settings,
    folder)
    scores = ranker.predict(feature_frame(examples))   # p_<action>, e_dwell_s, score

The network (models.ranking.dnn.net) learns each action on that action's positives and a
`negative_rate` sample of its negatives, like the GBDT, so `predict` maps its probabilities
back with models.ranking.calibration.correct_downsampled (`corrected=False` leaves them on the
sampled scale). With debiasing the position tower's inputs are the serving position and
source (models.ranking.dataset.serving_bias) unless `logged_bias=True`.

Saved as ranker.json (kind "dnn", the settings, the normalisation statistics), the weights
as a plain state dict (dnn.pt, loads with weights_only) and the exported scoring graph
(dnn.onnx). `engine="onnx"` scores through that graph (models.ranking.dnn.export) with onnxruntime
instead of eager torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

from features import registry as R
from models.ranking.base import (
    DNN,
    DWELL,
    TASKS,
    VALUE_SCORE,
    IncompatibleRanker,
    prediction_column,
    read_meta,
    write_meta,
)
from models.ranking.calibration import correct_downsampled
from models.ranking.dataset import BIAS, serving_bias
from models.ranking.dnn.config import DnnSettings
from models.ranking.dnn.inputs import TENSORS, Encoder, Normaliser
from models.ranking.dnn.net import DnnNet
from models.value import ValueWeights, value_score
from warehouse.catalog import ACTIONS, C
from warehouse.layout import Folder

FORMAT_VERSION = 1
KIND = DNN
WEIGHTS = "dnn.pt"
SCORING_BATCH = 65_536  # rows per forward pass when scoring


class DnnRanker:
    """The trained network, its input encoder and what scoring needs to use them.

    A task the raw input does not record (`absent`) keeps its head but is never trained;
    its probability is 0 (E[dwell] 0 for dwell), as with the GBDT."""

    kind = KIND

    def __init__(
        self,
        net: DnnNet,
        encoder: Encoder,
        negative_rate: float,
        weights: ValueWeights,
        absent: tuple[str, ...] = (),
    ):
        self.net = net.eval()
        self.encoder = encoder
        self.negative_rate = float(negative_rate)
        self.weights = weights
        self.absent = tuple(t for t in TASKS if t in absent)
        self.engine = "eager"  # what scoring runs on unless told: eager torch or "onnx"
        self._onnx = None  # the exported graph's session, made on first use
        self._onnx_file: Path | None = None  # the saved graph, if loaded from a folder

    @property
    def has_onnx(self) -> bool:
        """Whether the ranker was loaded with its exported graph (saved by `save`)."""
        return self._onnx_file is not None

    @property
    def debiased(self) -> bool:
        """Whether position and source were training inputs (fixed when scoring)."""
        return self.net.debias

    @property
    def features(self) -> tuple[str, ...]:
        """The input columns the ranker reads (a feature frame's, history slots last)."""
        return self.encoder.columns(self.debiased)

    def tensors(self, X: pd.DataFrame, *, logged_bias: bool = False) -> dict[str, np.ndarray]:
        """The network's inputs for the rows of X, with the serving position and source
        unless `logged_bias`. Raises IncompatibleRanker naming the columns X lacks."""
        needed = [c for c in self.features if c not in BIAS]
        missing = [c for c in needed if c not in X.columns]
        if missing:
            raise IncompatibleRanker(f"the frame lacks columns the dnn ranker reads: {missing}")
        if logged_bias and all(c in X.columns for c in BIAS):
            return self.encoder.encode(X)
        # The serving values, from the one column they depend on (no copy of X).
        return self.encoder.encode(X, serving_bias(X.loc[:, [R.UA_FOLLOWS]]))

    def outputs(
        self, X: pd.DataFrame, *, logged_bias: bool = False, engine: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Action logits (n, 6) on the sampled scale and E[dwell | click] (n,)."""
        return self.forward_arrays(self.tensors(X, logged_bias=logged_bias), engine)

    def forward_arrays(
        self, arrays: dict[str, np.ndarray], engine: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`outputs` of encoded rows (Encoder.encode), SCORING_BATCH rows per forward pass."""
        engine = engine or self.engine
        n = len(arrays["num"])
        logits, dwell = [], []
        for start in range(0, max(n, 1), SCORING_BATCH):
            part = {k: v[start : start + SCORING_BATCH] for k, v in arrays.items()}
            z, d = self._forward(part, engine)
            logits.append(z)
            dwell.append(d)
        return np.concatenate(logits).astype(np.float64), np.concatenate(dwell).astype(np.float64)

    def _forward(self, part: dict[str, np.ndarray], engine: str) -> tuple[np.ndarray, np.ndarray]:
        if engine == "onnx":
            if self._onnx is None:
                from models.ranking.dnn.export import OnnxScorer

                threads = torch.get_num_threads()  # as eager would: a Spark task's cores
                self._onnx = (
                    OnnxScorer(self._onnx_file, threads)
                    if self._onnx_file is not None
                    else OnnxScorer.from_net(self.net, threads)
                )
            return self._onnx.run(part)
        if engine != "eager":
            raise ValueError(f"engine must be 'eager' or 'onnx', got {engine!r}")
        with torch.inference_mode():
            z, d = self.net(*(torch.from_numpy(part[k]) for k in TENSORS if k in part))
        return z.numpy(), d.numpy()

    def predict(
        self,
        X: pd.DataFrame,
        *,
        corrected: bool = True,
        logged_bias: bool = False,
        engine: Literal["eager", "onnx"] | None = None,
    ) -> pd.DataFrame:
        """p_<action> per action, e_dwell_s (given a click) and the value score, per row.

        `logged_bias`: score with the logged position and source instead of the serving ones
        (to measure what debiasing changes); no effect on a ranker trained without them.
        `engine`: eager torch, or the exported ONNX graph on onnxruntime; by default
        `self.engine` (eager, unless the ranker was loaded for serving).
        """
        logits, dwell = self.outputs(X, logged_bias=logged_bias, engine=engine)
        return self.scores(logits, dwell, X.index, corrected=corrected)

    def scores(
        self, logits: np.ndarray, dwell: np.ndarray, index: pd.Index, *, corrected: bool = True
    ) -> pd.DataFrame:
        """predict's frame from the network's outputs."""
        out = {}
        for i, a in enumerate(ACTIONS):
            if a in self.absent:
                out[prediction_column(a)] = np.zeros(len(index))
                continue
            q = expit(np.asarray(logits[:, i], dtype=np.float64))  # no overflow at |z| > 709
            out[prediction_column(a)] = (
                correct_downsampled(q, self.negative_rate) if corrected else q
            )
        absent = DWELL in self.absent
        out[C.E_DWELL_S] = np.zeros(len(index)) if absent else np.clip(dwell, 0.0, None)
        probs = {a: out[prediction_column(a)] for a in ACTIONS}
        out[VALUE_SCORE] = value_score(
            probs, out[C.E_DWELL_S], self.weights, dwell_given_click=True
        )
        return pd.DataFrame(out, index=index)

    def save(self, folder: Folder) -> Folder:
        """ranker.json (kind, settings, statistics), the weights as a state dict and the
        exported scoring graph (dnn.onnx)."""
        from models.ranking.dnn.export import ONNX_FILE, export_onnx

        torch.save(self.net.state_dict(), folder.writable(WEIGHTS))
        export_onnx(self.net, folder)  # for scorers without torch (engine="onnx")
        meta = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "negative_rate": self.negative_rate,
            "weights": self.weights.model_dump(),
            "features": list(self.features),
            "absent": list(self.absent),
            "debias": self.debiased,
            "dnn": self.encoder.cfg.model_dump(mode="json"),
            "encoder": self.encoder.as_dict(),
            "n_numeric": self.encoder.n_numeric,
            "onnx": ONNX_FILE,
        }
        write_meta(folder, meta)
        return folder

    @classmethod
    def load(cls, folder: Folder) -> DnnRanker:
        meta = read_meta(folder)
        if meta.get("kind") != KIND or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{folder}: not a dnn ranker of format {FORMAT_VERSION} "
                f"(kind {meta.get('kind')}, format {meta.get('format_version')})"
            )
        cfg = DnnSettings.model_validate(meta["dnn"])
        enc = meta["encoder"]
        encoder = Encoder(cfg, Normaliser.from_dict(enc["normaliser"]), enc["history_len"])
        net = DnnNet(cfg, meta["n_numeric"], encoder.history_len, meta["debias"])
        net.load_state_dict(torch.load(folder.file(WEIGHTS), weights_only=True))
        weights = ValueWeights(**meta["weights"])
        ranker = cls(net, encoder, meta["negative_rate"], weights, tuple(meta["absent"]))
        if meta.get("onnx") and folder.file(meta["onnx"]).exists():
            ranker._onnx_file = folder.file(meta["onnx"])
        return ranker
