"""Adapters to the services the portal calls over gRPC (evidence catalog, provenance ledger)."""
