"""A minimal UnityVideo-style trainer that reads OpenUni shards directly (see docs/TRAINER.md).

model.py (the DiT), flow.py (rectified flow and tasks), data.py (shards -> batches), text.py
(frozen text encoder), latent.py (pixel space or a video VAE), train.py / sample.py / export.py
(the three CLIs).
"""
