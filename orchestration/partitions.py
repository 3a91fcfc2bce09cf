"""Partitions: per-tenant work is partitioned by tenant, kept in step with config by a sensor."""

import dagster as dg

# Tenant ids, added and removed by `tenant_partitions_sensor`. Never crossed with days: 1,000
# tenants x 365 days is far past the ~100,000 partitions per asset Dagster advises.
tenant_partitions = dg.DynamicPartitionsDefinition(name="tenant")

# Set on every run a sensor or schedule launches for a tenant (audit records and alerts read it).
TENANT_TAG = "agentprovision/tenant"
# Set on agent-work runs only, valued by tenant: the run queue allows one run in flight per value
# (deploy/dagster.yaml), so a tenant's syncs and evidence never wait behind its agent work.
DISPATCH_TAG = "agentprovision/dispatch-tenant"
