"""predliq engine: margin & liquidation engine and market simulator.

The engine stands alone: it imports numpy (and pandas/pyarrow for I/O only), never the predictor,
the pipelines, lightgbm or mlflow.
"""
