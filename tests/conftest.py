"""Shared test configuration: tiers are folders (unit needs nothing; e2e and notebooks need the live lab)."""
