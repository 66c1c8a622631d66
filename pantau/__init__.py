"""Pantau spine: settings, message contracts, codec, topics, Kafka helpers, logging and the CLI.

The stages (ingest, detectors, streams, storage, dashboards) build on this package; it never
imports any of them.
"""

__version__ = "0.1.0"
