"""Model code for MLflow models-from-code: MLflow runs this file to obtain the pyfunc model.

Kept to two lines on purpose: the class lives in ``conflict_events.inference.pyfunc`` so it can be
imported and tested like any other code.
"""

from mlflow.models import set_model

from conflict_events.inference.pyfunc import ConflictEventsPyfunc

set_model(ConflictEventsPyfunc())
