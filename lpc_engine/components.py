"""The method's pieces, for a model and training loop of one's own.

- `LPCHead`: backbone features -> linear z (with bias) -> classifier,
  returning ModelOutput(logits, latent, features) (section II);
- `LatentPenalty` / `latent_penalty`: gamma * ||z||^2, "sum" (eq. 1) or
  "mean" over the d latent dimensions (the authors' code);
- `GammaSchedule`: gamma by epoch, from the config's own fields;
- `latent_metrics`: every latent metric of Tables I and IV on tensors or arrays;
- `deepfool`: batched DeepFool robustness (Table II) on any module that
  returns a logits tensor or a NamedTuple with `.logits`.

The README's "LPC in your own training loop" puts them together.
"""

from lpc_engine.metrics import METRIC_NAMES, latent_metrics
from lpc_engine.model.head import LPCHead
from lpc_engine.model.losses import LatentPenalty, latent_penalty
from lpc_engine.model.network import ModelOutput
from lpc_engine.robustness import DeepFoolResult, deepfool
from lpc_engine.training.schedules import GammaSchedule

__all__ = ["LPCHead", "ModelOutput", "LatentPenalty", "latent_penalty", "GammaSchedule",
           "latent_metrics", "METRIC_NAMES", "deepfool", "DeepFoolResult"]
