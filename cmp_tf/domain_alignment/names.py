"""The alignment terms' names (what recipes and flags list); no TensorFlow."""

CORAL = "coral"
MMD = "mmd"
DANN = "dann"
CDANN = "cdann"
SUPCON = "supcon"
ALIGNMENT_TERMS = (CORAL, MMD, DANN, CDANN, SUPCON)
ADVERSARIAL_TERMS = (DANN, CDANN)  # they train a modality discriminator beside the network
