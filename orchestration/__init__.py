"""Dagster assembly: definitions, resources, jobs, schedules, sensors."""
