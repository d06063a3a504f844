"""Cluster provisioning: backends, binaries, processes. Private plumbing behind the `labkit` command."""
