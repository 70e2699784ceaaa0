"""MaskCLIP+: DeepLabv2 with CLIP's text classifier, trained on pseudo labels (offline or online)."""
