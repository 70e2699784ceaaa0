"""CLIP as MaskCLIP uses it: weights loading, dense features per last-block method, text embeddings."""
