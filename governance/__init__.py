"""Governance: roles and permissions, tenant isolation, audit verification, secrets, privacy, evidence."""
