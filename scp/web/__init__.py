"""The DICOMweb door: a STOW-RS endpoint that stores exactly as the C-STORE SCP does.

Why inside scp/: it is a second way in to the same durable write (scp/storage.py), the same
UID checks and the same catalog rows (scp/catalog.py); the SCP's sweeper then settles the
studies and dispatches the jobs whichever door the instances came through. Like the SCP it
never imports torch, sgc_core, worker or the composition root, so it starts fast and stays up
while the classifier is busy.
"""
