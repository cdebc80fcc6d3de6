"""How durable a write must be before we tell the outside world "got it", and whether we can write at all.

A webhook answered 200 is never sent again by LINE, and a browser event
answered 204 is never retried by the script: those acknowledging writes use
`ACKNOWLEDGED` - on the majority of a replica set (so a fail-over keeps them)
and in the journal (so a crash of the database right after keeps them).
SecantusDB honours `j: true` per write (it fsyncs that commit's log record
even without `--sync-on-commit`); MongoDB requires `j: true` for the same
guarantee when `writeConcernMajorityJournalDefault` is off.

A multi-document transaction committed with `ACKNOWLEDGED` is journaled on
MongoDB, but SecantusDB 0.7 commits transactions without syncing its journal
whatever the write concern (measured: a kill -9 right after lost 18 of 135
acknowledged browser events). `journal_barrier` - one small journaled write
after the commit - syncs the journal up to and including that commit (the log
is sequential); on MongoDB it is merely redundant.

`UNSYNCED` is for a write nothing outside depends on until a later
`ACKNOWLEDGED` write of the same process follows it (the journal and the
replication log are sequential, so that later write makes it durable too), or
whose loss a retry repairs: on the embedded database each journal sync costs
milliseconds of the one write queue that acknowledgements wait in.

`writable` answers from what the driver already knows (its topology, updated
by a failed operation or its monitor), without a round trip: while the
database is down an endpoint can refuse at once (503, the sender retries)
instead of waiting for server selection to time out.
"""

from __future__ import annotations

import os
import socket

from pymongo import WriteConcern

from storage.database import Database

ACKNOWLEDGED = WriteConcern(w="majority", j=True)
UNSYNCED = WriteConcern(w=1, j=False)
# An acknowledging write gives up after this long (the sender then retries): LINE waits 2 s for an answer.
ACK_TIMEOUT_SECONDS = 1.5
BARRIER = "journal_barrier"
_BARRIER_ID = f"{socket.gethostname()}:{os.getpid()}"  # one document per process: no hot spot between processes


def writable(database: Database) -> bool:
    """False when the driver knows no server can take writes right now (e.g. the database was just killed)."""
    return bool(database.client.topology_description.has_writable_server())


async def journal_barrier(database: Database) -> None:
    """Make every write this process committed before now durable (see the module docstring)."""
    await database[BARRIER].with_options(write_concern=ACKNOWLEDGED).update_one(
        {"_id": _BARRIER_ID}, {"$inc": {"n": 1}}, upsert=True)
