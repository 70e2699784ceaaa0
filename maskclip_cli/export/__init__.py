"""Exports of a label folder to the formats other tools read: COCO (detectron2, mmdet, COCO-Stuff
readers), Ultralytics YOLO segmentation, and CVAT's Segmentation mask 1.1 (hand correction)."""
