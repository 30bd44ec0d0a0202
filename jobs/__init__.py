"""Retraining jobs: a persistent queue and cron schedules in SQL, and the workers that run them.

    models.py     the tables (SQLAlchemy 2 typed ORM): jobs, schedules
    db.py         engine + sessions from Settings; Alembic upgrade/downgrade (migrations/)
    spec.py       a job's parameters, validated at submission (JobSpec -> TrainConfig)
    queue.py      submit, list, get, cancel; claim, heartbeat, finish, recover expired leases
    schedules.py  cron schedules with an IANA time zone; enqueue due runs exactly once
    worker.py     `urnn worker`: claim -> heartbeat -> train_pipeline -> record the outcome

Nothing here imports torch at import time, so the API and `urnn --help` stay light. docs/jobs.md
describes the policies (retries, cancellation, SIGTERM, missed schedule runs).
"""
