"""Ops-store tables of the integration hub (sync cursors and history, webhook deliveries, ...)."""
