"""Where jobs run: Kubernetes (`k8s`) or local process groups (`local`), behind one interface (`base`)."""
