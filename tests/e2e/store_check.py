"""Reads a lemo-coordinator's SQLite store (read-only, safe while it runs) and
prints what fault_e2e_test checks after each crash:

  integrity ok                                  PRAGMA integrity_check
  job <id> <state>                              one per job row (state: the enum number)
  events <job_id> <count> <min> <max>           per job: gap-free is count == max, min == 1
  checkpoint <job_id> <id> <step> <dir exists>  one per checkpoint row

usage: store_check.py <data-dir>
"""
import os
import sqlite3
import sys

data_dir = sys.argv[1]
db = sqlite3.connect("file:" + os.path.join(data_dir, "coordinator.db") + "?mode=ro", uri=True)
print("integrity", db.execute("PRAGMA integrity_check").fetchone()[0])
for (job_id, state) in db.execute("SELECT id, state FROM jobs ORDER BY seq"):
    print("job", job_id, state)
    count, low, high = db.execute(
        "SELECT COUNT(*), MIN(sequence), MAX(sequence) FROM events WHERE job_id = ?",
        (job_id,)).fetchone()
    print("events", job_id, count, low or 0, high or 0)
for (job_id, ckpt, step) in db.execute(
        "SELECT job_id, checkpoint_id, step FROM checkpoints ORDER BY job_id, step"):
    exists = os.path.isdir(os.path.join(data_dir, "checkpoints", job_id, ckpt))
    print("checkpoint", job_id, ckpt, step, "yes" if exists else "no")
