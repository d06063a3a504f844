"""Kubernetes verbs shaped like kubectl: client, apply, waits, namespaces, nodes, tables, rollouts, events."""
