"""The alignment terms' names (what recipes and flags list); no TensorFlow."""

CORAL = "coral"
MMD = "mmd"
DANN = "dann"
CDANN = "cdann"
SUPCON = "supcon"
PROXY = "proxy"  # ours: class proxies from the shared classifier
ALIGNMENT_TERMS = (CORAL, MMD, DANN, CDANN, SUPCON, PROXY)
TEMPERATURE_TERMS = (SUPCON, PROXY)
ADVERSARIAL_TERMS = (DANN, CDANN)  # they train a modality discriminator beside the network
