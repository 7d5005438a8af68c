"""Multi-domain alignment terms over the modalities (`terms`: CORAL, MMD, cross-modal
supervised contrastive; `adversarial`: DANN, CDANN; `stage_terms`: a stage's terms on the
global batch; `names`: the terms' names). Imports nothing: callers import the
module they use."""
