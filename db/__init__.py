"""The node's database: SQLAlchemy 2.0 models, sessions and Alembic migrations.

Every hand-over between processes (SCP -> classify worker -> deliver worker) is recorded here
first (transactional outbox), so a lost broker message or a killed process delays a result
but never loses it.
"""

from db.models import Base, Delivery, Instance, Job, JobState, Prediction, Report, Study
from db.session import make_engine, make_session_factory, upgrade

__all__ = [
    "Base",
    "Delivery",
    "Instance",
    "Job",
    "JobState",
    "Prediction",
    "Report",
    "Study",
    "make_engine",
    "make_session_factory",
    "upgrade",
]
