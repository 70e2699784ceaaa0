"""On-disk formats: the label-folder layout, label/confidence map files, the manifest, image discovery."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LabelFolder": ".label_folder",
    "classes_document": ".label_folder",
    "read_confidence": ".label_folder",
    "palette": ".label_files",
    "read_label_png": ".label_files",
    "write_confidence": ".label_files",
    "write_label_png": ".label_files",
    "Manifest": ".manifest",
    "read_manifest": ".manifest",
    "ManifestEntry": ".manifest",
    "iter_manifest": ".manifest",
    "find_images": ".image_files",
    "output_stems": ".image_files",
})
