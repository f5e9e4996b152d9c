"""The ranker's MLflow pyfunc model, logged as code (MLflow's models-from-code).

MLflow copies this file into the logged model and runs it at load time; `set_model` names
the model object. Loading needs the feedrank package importable (models.ranking.base, and the
module of the ranker's kind).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd

from models.ranking.load import load_ranker_folder
from models.registry.versions import RANKER_ARTIFACT
from warehouse.layout import Folder


class RankerModel(mlflow.pyfunc.PythonModel):
    """Feature frame in (models.ranking.dataset.feature_frame), p_<action>, e_dwell_s, score out."""

    def load_context(self, context) -> None:
        self.ranker = load_ranker_folder(Folder(Path(context.artifacts[RANKER_ARTIFACT])))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.ranker.predict(model_input)


mlflow.models.set_model(RankerModel())
