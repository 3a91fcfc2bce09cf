"""Partitions: per-tenant work is partitioned by tenant, kept in step with config by a sensor."""

import dagster as dg

# Tenant ids, added and removed by `tenant_partitions_sensor`. Never crossed with days: 1,000
# tenants x 365 days is far past the ~100,000 partitions per asset Dagster advises.
tenant_partitions = dg.DynamicPartitionsDefinition(name="tenant")

# Set on every run the dispatch and connector sensors launch for a tenant; the run queue's tag
# concurrency limits (deploy/dagster.yaml) count runs per value of this tag.
TENANT_TAG = "agentprovision/tenant"
