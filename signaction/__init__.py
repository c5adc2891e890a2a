"""Core of the container signing step: inputs, config, plan, artifacts, outputs.

Signers live in the sibling package ``signers``; ``entrypoint.py`` ties a run together.
"""

NAME = "container-sign-action"
__version__ = "0.1.0"
CREATOR = f"{NAME} {__version__}"
