"""CrossGuard policy pack of the project; the rules themselves are plain functions in ``policies.rules``."""
