"""The names of the shared representation's layers, as every package spells them: the
features a branch returns, the layers priors sit on, the columns of Table 3."""

POOL5, FC6, FC7 = "pool5", "fc6", "fc7"
FEATURE_LAYERS = (POOL5, FC6, FC7)
CLASSIFIER = "classifier"
UPPER_LAYERS = (FC6, FC7, CLASSIFIER)  # shared, or one copy per modality
LOGITS = "logits"
