"""The pure transfer model: the case and its decisions, policy, deadlines, working days, the clock.

Imports only the standard library, pydantic, `chinesecalendar` and `schemas`: no logging, no I/O
(`tests/unit/test_domain_purity.py` checks it).

| module      | holds                                                                                 |
|-------------|---------------------------------------------------------------------------------------|
| `case`      | the case state machine, `decide(case, event, ctx) -> Decision` (a package by concern) |
| `policy`    | the rules of a transfer, as pure functions of plain values                            |
| `deadlines` | the regimes' limits in working days, due dates                                        |
| `workdays`  | China's working days from given years, `chinesecalendar`, then weekdays               |
| `clock`     | the clock port, the system clock and a manual one                                     |
| `books`     | the books' value types the domain reads (`PersonAccount`, `LedgerEntry`)              |

Calendar files and the warnings about missing years are the adapter `agents.calendars`'s.
"""

from agents.domain.case import Case, Context, Decision, decide

__all__ = ["Case", "Context", "Decision", "decide"]
