"""TopK sparse autoencoders on one site's outputs (eq. 4-5): the model, its activation store, its trainer,
and the feature scores and directions that SAE steering is built from (eq. 6-7)."""

from tada.sae.features import (
           mean_activations,
           sae_direction,
           select_features,
           tfidf_scores,
)
from tada.sae.model import (
           CONFIG_NAME,
           WEIGHTS_NAME,
           EncoderOutput,
           ForwardOutput,
           SaeConfig,
           TopKSAE,
           fvu,
           geometric_median,
)
from tada.sae.store import ActivationReader, ActivationWriter
from tada.sae.train import TrainResult, choose_sae, default_lr, grid_search, train_sae

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "ActivationReader", "ActivationWriter", "EncoderOutput", "ForwardOutput",
           "SaeConfig", "TopKSAE", "TrainResult", "choose_sae", "default_lr", "fvu", "geometric_median", "grid_search",
           "mean_activations", "sae_direction", "select_features", "tfidf_scores", "train_sae"]
