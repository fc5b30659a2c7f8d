"""Local mode: a whole online endpoint on one machine (serving processes + a local router), no cluster needed."""

from __future__ import annotations
