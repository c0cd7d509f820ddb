"""Building, archiving and verifying evidence bundles (filesystem side of the CLI and the service)."""
