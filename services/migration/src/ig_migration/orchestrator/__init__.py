"""Runs a plan against PostgreSQL phase by phase: gates, expand, dual-write, backfill, shadow-read, baseline,
cutover, canary analysis, verify, contract; and backs it out."""
