"""The offline toy world: synthetic benchmarks, scored through lm-eval."""
