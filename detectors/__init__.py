"""Detector stage: frames from Kafka → YOLO (ultralytics) → detections back to Kafka."""
