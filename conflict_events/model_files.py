"""The files of a saved joint-model directory (written by ``model.save_joint_model``). A leaf module, so
that ``tracking`` can find a model inside a downloaded artifact without importing the model code."""

WEIGHTS_FILE = "model.safetensors"
JOINT_CONFIG_FILE = "joint_config.json"
# The name of the joint-model directory inside a logged pyfunc model (its MLflow artifact).
PYFUNC_ARTIFACT = "joint_model"
