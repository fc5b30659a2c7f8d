"""Automatic safe rollout: mirror, traffic steps with bake times, guard metrics, rollback on a breach.

``plan`` (pure: steps, weights, guards), ``window`` (metric snapshots and their differences), ``engine`` (the
loop, independent of where the endpoint runs), ``local`` (a local endpoint: its router and serving processes),
``stack`` (a Pulumi stack through the Automation API, metrics from Prometheus).
"""
