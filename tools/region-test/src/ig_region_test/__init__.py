"""Multi-region readiness: two simulated regions, a measured failover (RPO/RTO) and residency proofs."""
