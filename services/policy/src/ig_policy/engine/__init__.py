"""Adapters to the policy engine (the OPA sidecar)."""
