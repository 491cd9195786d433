"""raysolve: a distributed batch solver for competition math on Ray.

Problems fan out as tool-integrated samples over engine actors; sandbox actors run
the model's code; a majority vote with early stopping decides. Start at
``raysolve.solver.Solver`` (the builder) or the ``raysolve`` command.
"""

__version__ = "0.1.0"
