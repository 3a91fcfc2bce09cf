"""Ops-store tables of the LLM gateway (budget reservations, rate-limit windows, ...)."""
