"""Exports of a label folder to the formats other tools read: COCO (detectron2, mmdet, Datumaro,
CVAT, FiftyOne), Ultralytics YOLO segmentation, CVAT's Segmentation mask 1.1 (hand correction),
Label Studio pre-annotations (review) and Hugging Face ``datasets`` Parquet (training code)."""
