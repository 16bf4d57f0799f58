"""predliq predictor: breach-forecast features, LightGBM training and serving (issue 4 onwards)."""
