"""predliq command line: thin glue over engine and predictor."""
