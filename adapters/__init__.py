"""Broker adapters: each implements bus.transport.Transport and nothing else."""
