"""The self-consuming regimes and samplers (registries), and the run of generations over them (see README: where things are)."""
