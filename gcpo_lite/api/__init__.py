"""The Python API: GCPOTrainer and GCPOConfig, named as TRL names GRPOTrainer and GRPOConfig."""
