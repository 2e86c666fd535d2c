"""Study settling: a study is complete when nothing arrived for ``stable_age`` seconds.

Why a revision counter instead of a flag: instances may keep arriving after a job was made
(a late view, a corrected image). Each new or changed instance bumps ``received_rev``; a
settled study whose ``received_rev`` is ahead of ``jobbed_rev`` gets exactly one new job for
that revision. The guarded UPDATE and the job insert share one transaction, so two sweepers
(or a crash between the two statements) can never make two jobs or lose one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Instance, Job, JobState, Study, utcnow

log = logging.getLogger(__name__)


def settle_studies(
    session_factory: sessionmaker[Session], stable_age: float, now: datetime | None = None
) -> list[int]:
    """Create a pending Job for each settled, changed study; return the new job ids.

    A study without any classifiable instance (only other storage classes) is marked
    settled without a job: there is nothing for the classifier to do.
    """
    cutoff = (now or utcnow()) - timedelta(seconds=stable_age)
    with session_factory() as session:
        due = session.execute(
            select(Study.id, Study.study_uid, Study.received_rev)
            .where(Study.received_rev > Study.jobbed_rev, Study.last_received_at <= cutoff)
            .order_by(Study.last_received_at)
        ).all()
    created: list[int] = []
    for study_id, study_uid, revision in due:
        try:
            with session_factory.begin() as session:
                claimed = session.execute(
                    update(Study)
                    .where(
                        Study.id == study_id,
                        Study.received_rev == revision,
                        Study.jobbed_rev < revision,
                        Study.last_received_at <= cutoff,
                    )
                    .values(jobbed_rev=revision)
                ).rowcount
                if claimed != 1:
                    continue  # changed since the query, or another sweeper claimed it
                has_images = session.scalar(
                    select(exists().where(Instance.study_id == study_id, Instance.classifiable))
                )
                if not has_images:
                    log.info("study %s settled with nothing to classify", study_uid)
                    continue
                job = Job(study_id=study_id, revision=revision, state=JobState.pending)
                session.add(job)
                session.flush()
                created.append(job.id)
        except IntegrityError:
            log.warning("study %s revision %d already has a job", study_uid, revision)
            continue
        log.info("study %s settled at revision %d: job %d", study_uid, revision, job.id)
    return created
