"""Throughput benchmarks (`make bench`): input pipeline, model step, manifest rendering."""
