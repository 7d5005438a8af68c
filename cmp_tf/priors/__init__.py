"""Activation priors of method B: fitting, the `.npz` format, and the Keras layer."""

from cmp_tf.priors.activation_prior import ActivationPrior
from cmp_tf.priors.fit import fit_gaussian, fit_gmm
from cmp_tf.priors.params import (
    GAUSSIAN,
    GMM,
    KINDS,
    LAYERS,
    PriorParams,
    load_prior,
    save_prior,
)

__all__ = [
    "ActivationPrior", "GAUSSIAN", "GMM", "KINDS", "LAYERS", "PriorParams", "fit_gaussian",
    "fit_gmm", "load_prior", "save_prior",
]
