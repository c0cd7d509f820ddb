# Fixtures for tests against the real local infrastructure (PostgreSQL, Kafka, OPA) live in ig_infra; every rerun's
# failed attempt is kept by ig_infra.rerun_record.
pytest_plugins = ["ig_infra.pytest_plugin", "ig_infra.rerun_record"]
