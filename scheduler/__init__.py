"""The worker: APScheduler ticks, `run-once`, due-set queries, claims, dispatch, reports.

APScheduler only wakes the worker up; which work is due and who does it is
decided in MongoDB (indexed `next_due_at` queries and leased batch claims), so
any number of workers give the same result as one. Nothing is kept in memory
between ticks.
"""
