"""Task and queue names, the only thing the SCP and the workers share about a task.

Why by name: the SCP sends ``sgc.classify_study`` without importing worker code (and through it
torch); the worker registers its tasks under the same names.
"""

from __future__ import annotations

CLASSIFY_TASK = "sgc.classify_study"
DELIVER_TASK = "sgc.deliver_report"
CLASSIFY_QUEUE = "classify"
DELIVER_QUEUE = "deliver"

#: Which queue each task travels on.
TASK_ROUTES = {
    CLASSIFY_TASK: {"queue": CLASSIFY_QUEUE},
    DELIVER_TASK: {"queue": DELIVER_QUEUE},
}
