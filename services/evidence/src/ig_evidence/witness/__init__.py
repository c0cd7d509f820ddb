"""A C2SP tlog-witness for the evidence ledger (and any other log configured): ``python -m ig_evidence.witness``."""
