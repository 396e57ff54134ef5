"""The self-consuming regimes (registry) and the generation orchestrator."""
