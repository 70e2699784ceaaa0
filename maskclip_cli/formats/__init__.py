"""On-disk formats: the label-folder layout, label/confidence map files, the manifest, image discovery."""
