"""sgc_core: the score-based generative classifier (Sarker et al. 2025, arXiv 2502.17727).

Rooms: ``sde`` (forward processes), ``unet`` (class-conditional score networks), ``analytic``
(closed-form Gaussian score, the test oracle), ``train`` (denoising score matching), ``elbo`` and
``likelihood_ode`` (estimators of log p(x | y)), ``calibration`` (posterior, temperature,
operating point, OOD threshold), ``evaluation`` (metrics and plots), ``checkpoint`` (safetensors
+ JSON model card) and ``inference`` (the loaded ``Classifier`` the worker uses).

Nothing here imports the DICOM networking, the database or the task queue: this package must be
usable from a notebook or a benchmark script alone.
"""
