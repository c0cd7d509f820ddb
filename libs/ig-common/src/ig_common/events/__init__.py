"""CloudEvents 1.0 on Kafka (binary content mode, protobuf payloads) with a transactional outbox."""
