"""The studio: a web portal over endpoints (``endpoints studio``): endpoints, deployments, traffic, keys, logs,
metrics and batch jobs. ``backend.py`` is the only module that reads endpoint state; ``app.py`` serves pages."""
