"""The pure transfer model: the case and its decisions, policy, deadlines, working days, the clock.

Imports only the standard library, pydantic, `chinesecalendar` and `schemas`: no logging, no I/O.
"""

__all__: list[str] = []
