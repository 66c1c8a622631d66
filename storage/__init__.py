"""Storage stage: migrations, the Kafka → PostgreSQL sink, and queries for people."""
