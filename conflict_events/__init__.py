"""conflict-events: a joint event-type + actor-role transformer for conflict news.

Layout (one module per concept):
- ``schema``      the example record every stage consumes and produces
- ``labels``      the label schema (event classes with numeric codes, actor roles, BIO tags)
- ``config``      typed, validated YAML configuration
- ``errors``      errors that name file, line and field
- ``corpora``     readers for upstream formats, validation, dev split, stats, fetch
- ``alignment``   character offsets <-> tokens <-> sub-words, BIO encoding and decoding
- ``model``       the joint model (shared encoder, event head, role head), save/load
- ``records``     the sentence record inference returns: one field table, its Arrow/Spark/JSON forms
- ``tracking``    MLflow I/O
- ``training``    (top-level ``training/``) train loop, evaluation, registry, sweeps
- ``inference``   (top-level ``inference/``) predictor, batch job, pyfunc, Spark
"""

__version__ = "0.1.0"
