"""Event builders of the Policy Reasoner."""
