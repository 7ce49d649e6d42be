"""The sizes of the full reliability runs: one place, read by ``make reliability``
(``report.py``, whose tables the README quotes) and by the slow tests, so CI runs exactly
what the README's figures describe. A sweep split in ``parts`` runs as that many tests
(spread over pytest-xdist's workers); the report runs the same parts and adds them up.
"""

from __future__ import annotations

# Crashes: SIGKILL at a random moment (real mid-run kills; part p uses seed SEED + p).
RANDOM_KILLS, RANDOM_KILL_PARTS, RANDOM_KILL_SEED = 100, 2, 2024
IMPORT_STEP_PARTS = 2  # import-model killed at every step, in interleaved shares
SHARED_IMPORT_STEPS = 12  # import-model beside another model: sampled steps
TRAIN_STEPS = 3  # train --resume: sampled steps (each trial starts torch)
HUB_STEPS = 2  # import-model from the Hub: sampled steps

# Concurrency (run_all's full sizes).
SAME_IMPORT_PROCESSES = 8
REGISTRARS, REGISTRAR_ROUNDS = 16, 4
GC_ROUNDS, GC_IMPORTERS = 3, 3
DELETE_ROUNDS = 12
# The no-lock register/delete race is run again (at most this many times) until it loses an
# update: the proof that the race the lock prevents is real.
NO_LOCK_TRIES = 3

# Disk full: every step of every scenario (diskfull_scenarios.SCENARIOS).
