"""The worker room: Celery app and tasks that classify studies, build SRs and deliver them.

May import sgc_core, db, highdicom and pynetdicom; never scp (docs/architecture.md, "Rooms and their imports").
"""
