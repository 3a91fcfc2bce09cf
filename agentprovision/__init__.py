"""The agentprovision kernel: settings, admin config, ops store, events and the CLI."""
