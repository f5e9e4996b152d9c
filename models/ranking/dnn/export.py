"""The deep ranker's scoring graph on ONNX: exported from torch, run with onnxruntime.

    scorer = OnnxScorer.from_net(ranker.net)          # or OnnxScorer.load(export_onnx(...))
    logits, dwell = scorer.run(ranker.tensors(X))     # what DnnNet.forward gives, as numpy
    ranker.predict(X, engine="onnx")                  # the same, through the ranker

The graph takes the encoded tensors (models.ranking.dnn.inputs.TENSORS, batch dimension dynamic) and
returns the action logits (B, 6), position tower included, and E[dwell | click] (B,); the
encoding and the calibration stay in Python (numpy, vectorised). torch's TorchScript-based
exporter (dynamo=False) needs no package beyond onnx; onnxscript is not installed here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.ranking.dnn.inputs import HISTORY_TENSORS, TENSORS, categorical_sizes
from models.ranking.dnn.net import DnnNet
from warehouse.layout import Folder

ONNX_FILE = "dnn.onnx"
OPSET = 17
OUTPUTS = ("logits", "dwell")


def example_inputs(net: DnnNet, rows: int = 2) -> dict[str, torch.Tensor]:
    """Zero tensors of the shapes the network takes (the exporter traces them)."""
    cfg, n = net.cfg, rows
    out = {
        "num": torch.zeros(n, net.n_numeric),
        "cat": torch.zeros(n, len(categorical_sizes(cfg)), dtype=torch.int64),
        "ids": torch.ones(n, 3, dtype=torch.int64),
        "wide": torch.ones(n, len(cfg.wide_crosses), dtype=torch.int64),
        "pos": torch.zeros(n, dtype=torch.int64),
        "src": torch.zeros(n, dtype=torch.int64),
    }
    if net.history_len:
        out |= {k: torch.zeros(n, net.history_len, dtype=torch.int64) for k in HISTORY_TENSORS}
    return out


def to_onnx(net: DnnNet) -> bytes:
    """The serialised ONNX model of the network in eval mode."""
    net = net.eval()
    inputs = example_inputs(net)
    names = [k for k in TENSORS if k in inputs]
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            net,
            tuple(inputs[k] for k in names),
            buffer,
            input_names=names,
            output_names=list(OUTPUTS),
            dynamic_axes={k: {0: "batch"} for k in (*names, *OUTPUTS)},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def export_onnx(net: DnnNet, folder: Folder) -> Path:
    """Write the scoring graph as dnn.onnx into `folder`; its path."""
    path = folder.writable(ONNX_FILE)
    path.write_bytes(to_onnx(net))
    return path


class OnnxScorer:
    """An onnxruntime session of the exported graph, fed with encoded numpy arrays."""

    def __init__(self, model: bytes | Path, threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        # The exporter drops inputs the graph does not use (position and source without
        # debiasing), so feed only those it kept.
        self.inputs = [i.name for i in self.session.get_inputs()]

    @classmethod
    def from_net(cls, net: DnnNet, threads: int | None = None) -> OnnxScorer:
        return cls(to_onnx(net), threads or net.cfg.num_threads)

    def run(self, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Logits (B, 6) and dwell (B,) of encoded rows
        (models.ranking.dnn.inputs.Encoder.encode)."""
        logits, dwell = self.session.run(list(OUTPUTS), {k: arrays[k] for k in self.inputs})
        return logits, dwell
