"""The node's DICOM front door: a C-ECHO/C-STORE SCP, its durable storage writer, study
settling and the outbox that hands settled studies to the workers by Celery task name.

This package never imports torch, sgc_core or worker: the SCP must start fast, stay small,
and keep receiving while the classifier is busy or down.
"""
