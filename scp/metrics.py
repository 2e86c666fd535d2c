"""Prometheus counters of the SCP (served by sgc_node.metrics on SGC_METRICS_PORT)."""

from prometheus_client import Counter

C_STORE = Counter("sgc_c_store_total", "C-STORE requests answered, by DIMSE status", ["status"])
INSTANCES = Counter(
    "sgc_instances_received_total",
    "Instances stored, by outcome of the write",
    ["outcome"],  # new | unchanged | replaced
)
BYTES = Counter("sgc_received_bytes_total", "Bytes of instances written to storage")
JOBS_TAKEN_BACK = Counter(
    "sgc_jobs_taken_back_total",
    "Running jobs whose worker died (heartbeat older than the lease), taken back by the sweeper",
    ["outcome"],  # resent | failed (SGC_MAX_ATTEMPTS reached: a poison study)
)
