"""The forecaster as an MLflow pyfunc model: features in, calibrated probabilities out.

The logged model carries the exported ``model.txt`` and ``model.json`` as artifacts and this
package as code, so ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` need no predliq
install. Input columns must be exactly the model's features, in any order; anything else is an
error naming the difference, never a silent reordering into the wrong columns.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd


class BreachForecasterModel(mlflow.pyfunc.PythonModel):
    """Serve a saved :class:`predictor.model.BreachForecaster`."""

    def load_context(self, context) -> None:
        from predictor.model import BreachForecaster

        self.forecaster = BreachForecaster.load(context.artifacts["forecaster"])
        self.features = list(self.forecaster.meta_["features"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        missing = [f for f in self.features if f not in model_input.columns]
        extra = [c for c in model_input.columns if c not in self.features]
        if missing or extra:
            raise ValueError(
                f"input columns do not match the model's features: missing {missing}, "
                f"unexpected {extra}"
            )
        X = model_input[self.features].to_numpy(np.float32)
        return self.forecaster.predict_proba(X)


if __name__ != "predictor.pyfunc":
    # Logged as code (``python_model=<this file>``), no pickle: MLflow runs this file to get the
    # model object when it loads the model.
    from mlflow.models import set_model

    set_model(BreachForecasterModel())
