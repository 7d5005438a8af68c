"""Multi-domain alignment terms over the modalities (`terms`: CORAL, MMD, cross-modal
supervised contrastive; `adversarial`: DANN, CDANN). Imports nothing: callers import the
module they use."""
