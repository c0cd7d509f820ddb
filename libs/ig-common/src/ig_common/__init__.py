"""Mechanism shared by the Maestro Conductor services; never domain logic."""
