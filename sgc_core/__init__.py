"""sgc_core: the score-based generative classifier (Sarker et al. 2025, arXiv 2502.17727).

Rooms: ``sde`` (forward processes), ``unet`` (class-conditional score networks), ``analytic``
(closed-form Gaussian score, the test oracle), ``train`` (denoising score matching), ``elbo`` and
``likelihood_ode`` (estimators of log p(x | y)), ``calibration`` (posterior, temperature,
operating point, OOD threshold), ``evaluation`` (metrics and plots), ``checkpoint`` (safetensors
+ JSON model card) and ``inference`` (the loaded ``Classifier`` the worker uses).

Nothing here imports the DICOM networking, the database or the task queue: this package must be
usable from a notebook or a benchmark script alone.
"""

import os

# Why: torch's OpenMP threads spin while they wait for each other. With a core busy elsewhere
# (the SCP, another worker) two spinning threads took 9.8 s for a 4-view study that one thread
# did in 5.5 s; sleeping threads took 5.4 s, and 3.5 s on a quiet machine (one thread: 5.3 s).
# OpenMP reads this once, when torch loads, so it is set here, before any sgc_core module
# imports torch; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
