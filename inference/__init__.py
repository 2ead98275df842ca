"""Inference: the document Predictor, the batch job, the MLflow pyfunc (serving) and the Spark engine."""
