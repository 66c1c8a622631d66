"""Ingest stage: cameras (capture, sampling, JPEG, heartbeats) and sensors (MQTT → validated
readings) into Kafka, plus the sensor simulator."""
