"""Numbers the whole package agrees on, in one place."""

DEFAULT_MODEL = "ViT-B-16"  # the paper's CLIP: open_clip architecture and pretrained tag
DEFAULT_PRETRAINED = "openai"
IGNORE_INDEX = 255  # label-map value for "no label": skipped by training and scoring
SOFTMAX_SCALE = 100.0  # CLIP's logit scale: probabilities are softmax(100 * cosine)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics (the DeepLab backbone's input)
IMAGENET_STD = (0.229, 0.224, 0.225)
