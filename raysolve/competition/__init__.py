"""AIMO-style competition mode: time-budget policies, the per-problem loop, the
notebook ``Predictor`` and a local stand-in for the competition's gateway."""
