"""A Keras model applied to spectrograms: the one inference loop of training selection, evaluation,
prediction and compression fine-tuning. Images are rendered batch by batch (``Frontend.model_input``), so
no split or recording has to fit in memory as 224×224×3 inputs."""
from __future__ import annotations

import numpy as np

from dslite_tiny.audio.frontend import Frontend

BATCH = 64


def predict_mel(model, mel_db: np.ndarray, frontend: Frontend, *, batch_size: int = BATCH) -> np.ndarray:
    """(n, classes) probabilities of ``n`` chunk spectrograms."""
    out = np.zeros((len(mel_db), model.output_shape[-1]), np.float32)
    for start in range(0, len(mel_db), batch_size):
        x = frontend.model_input(mel_db[start:start + batch_size])
        out[start:start + batch_size] = model(x, training=False).numpy()
    return out
