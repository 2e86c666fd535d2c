"""Prometheus counters of the worker processes (served by sgc_node.metrics).

Under `sgc serve` the worker shares PROMETHEUS_MULTIPROC_DIR with the SCP, whose endpoint
serves the sum; a standalone `sgc worker` serves its own on SGC_METRICS_PORT.
"""

from prometheus_client import Counter, Histogram

CLASSIFY_SECONDS = Histogram(
    "sgc_classification_seconds",
    "Wall time of one study classification: read, preprocess, classify, SR, commit",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
IMAGES = Counter(
    "sgc_images_total",
    "Images through the classifier by outcome",
    ["outcome"],  # classified | ood | unclassifiable
)
DELIVERY_ATTEMPTS = Counter(
    "sgc_delivery_attempts_total",
    "C-STORE attempts of reports to archives by outcome",
    ["outcome"],  # sent | retry | failed
)
