"""pcigate: CLI, configuration loading and the embedded dev stack.

This package only wires the domain packages (``gateway``, ``evidence``, ``tui``, ``reports``) together;
it holds no domain logic of its own.
"""

__version__ = "0.1.0"
