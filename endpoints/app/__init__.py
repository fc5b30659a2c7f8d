"""Application services over a whole stack: the offline plan (:mod:`endpoints.app.plan`) and promotion between
stacks (:mod:`endpoints.app.promote`).

The layer above the builders: these import :mod:`components.builders`; the core of this package (specs, loader,
project, catalog, images) never does (an import-linter contract in pyproject.toml keeps it so). The CLI
(:mod:`endpoints.cli`), the SDK's ``Workspace`` and ``endpoints rollout --stack`` call them.
"""
