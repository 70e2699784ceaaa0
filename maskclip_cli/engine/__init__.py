"""The segmenters and their refinements: MaskCLIP, key smoothing, prompt denoising, sliding windows."""
