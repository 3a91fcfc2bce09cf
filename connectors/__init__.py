"""Integration hub: the connector SDK, built-in connectors, webhooks and triggers. Plain Python, no Dagster."""
