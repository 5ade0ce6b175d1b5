"""The Kubernetes backend: one client with one table of kinds, readers, status, logs, one-shot Jobs, gang,
history."""
