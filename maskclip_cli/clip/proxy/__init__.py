"""A second frozen backbone that decides which patches belong together: ProxyCLIP (DINO / DINOv2
guidance, :mod:`.proxyclip`) and Trident (plus SAM guidance, :mod:`.trident`); the timm backbones
load through :mod:`.backbone`."""
