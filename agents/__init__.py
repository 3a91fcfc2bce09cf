"""Agents: agent types, tools, the runtime loop and the LLM gateway. Plain Python, no Dagster."""
