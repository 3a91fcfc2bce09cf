"""Dagster asset definitions: thin wiring over the kernel and domain packages."""
