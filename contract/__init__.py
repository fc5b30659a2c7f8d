"""The contract between the processes of the project: what the writers (builders, local supervisor) put into a
serving or batch process's environment and files, and how that process reads it.

Imports nothing else of the project; ``serving``, ``components`` and ``endpoints`` all import it
(docs/architecture.md). One module per contract: ``serving`` (online serving settings and derived timeouts),
``batch`` (batch runner settings), ``model_layout`` (where the model lies inside ``AZUREML_MODEL_DIR``),
``keys`` (the files of the keys folder).
"""
