from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "migration"


class LockHeld(RuntimeError):
    """Another orchestrator drives this change; the message says who."""
