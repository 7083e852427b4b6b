"""Robustness of a trained model (paper section III.B, Table II).

- `deepfool`: batched DeepFool (Moosavi-Dezfooli et al. 2016) with the
  authors' semantics; `deepfool_single` is the one-input reference.
- `robustness_table`: the Table II numbers (DESIGN.md contract names).
- `lipschitz_estimate`: the authors' input-gradient norm of the logit margin.
"""

from lpc_engine.robustness.attack import DeepFoolResult, deepfool, deepfool_single
from lpc_engine.robustness.lipschitz import lipschitz_estimate
from lpc_engine.robustness.table import robustness_table

__all__ = ["DeepFoolResult", "deepfool", "deepfool_single", "lipschitz_estimate", "robustness_table"]
