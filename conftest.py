# Fixtures for tests against the real local infrastructure (PostgreSQL, Kafka, OPA) live in ig_infra.
pytest_plugins = ["ig_infra.pytest_plugin"]
