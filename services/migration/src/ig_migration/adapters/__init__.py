"""Clients of other systems: BurnService, Prometheus, Kubernetes."""
