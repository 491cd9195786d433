"""Generated competition-style problems with tool-integrated (Python) solutions
for training raysolve's tiny math model; see :mod:`raysolve.tiny.families`."""
