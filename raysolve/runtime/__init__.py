"""The Ray layer: configuration, engine and coordinator actors, placement and the
``Solver`` builder. The only scheduling code that knows about Ray; the decisions
themselves are made by ``raysolve.core.scheduling``."""
