"""The two-tower model as an MLflow pyfunc, logged as code (models-from-code, nothing pickled).

`predict` embeds posts: a frame with the post tower's inputs (models.retrieval.two_tower.Encoder's
post_inputs: topic, hashtags, author, media as ints and dense as a list of 4 floats) in, one
embedding (list of floats) per row out. The job loads the towers themselves via `towers`.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch

from models.retrieval.two_tower import load
from warehouse.layout import Folder


class RetrievalModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.towers = load(Folder(Path(context.artifacts["towers"])))

    @torch.no_grad()
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        x = {
            "topic": torch.as_tensor(model_input["topic"].to_numpy(np.int64)),
            "hashtags": torch.as_tensor(np.stack(model_input["hashtags"]).astype(np.int64)),
            "author": torch.as_tensor(model_input["author"].to_numpy(np.int64)),
            "media": torch.as_tensor(model_input["media"].to_numpy(np.int64)),
            "dense": torch.as_tensor(np.stack(model_input["dense"]).astype(np.float32)),
        }
        vectors = self.towers.post_vectors(x).numpy()
        return pd.DataFrame({"embedding": list(vectors)})


mlflow.models.set_model(RetrievalModel())
