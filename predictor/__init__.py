"""Breach forecasts: features, LightGBM training, baselines, metrics, MLflow tracking, serving.

data      reading and checking history partitions (manifests, hashes, columns, horizons)
features  causal market and account features (FEATURES, in model input order)
dataset   forecastable rows of each partition, row sampling, the seed split
model     BreachForecaster: booster + isotonic calibration, saved as model.txt + model.json
baselines analytic first-passage probability, logistic regression, margin-ratio rule
metrics   PR-AUC, Brier, ECE, precision@k, event recall and lead times
train     the training protocol (seed split, walk-forward, regime shift) -> TrainResult
tracking  MLflow run, registry aliases (champion / challenger), export, model card
pyfunc    the forecaster as an MLflow pyfunc model (logged as code)
plots     PR curves, reliability diagram, feature importance, lead times
serving   online features and forecasters for the engine (model, analytic, remote); loading
compiled  the booster compiled to machine code (lleaves), Booster.predict's outputs
"""
