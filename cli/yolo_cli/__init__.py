"""Command line for the YOLO inference API (`yoloctl`, or `python -m yolo_cli`)."""

__version__ = "0.1.0"
