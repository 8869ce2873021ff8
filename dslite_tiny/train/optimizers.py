"""The optimizers and learning-rate warm-up that training and compression's fine-tunes share (one choice of
optimizer by config name, one warm-up), so a unit trains the same way wherever it runs."""
from __future__ import annotations

import tf_keras as keras


def warmup_rate(rate: float, steps: int):
    """A learning rate that rises linearly from a tenth of ``rate`` to ``rate`` over ``steps`` steps, then
    stays: a fresh optimizer's first steps do not jolt a trained model (training phases, fine-tunes)."""
    if steps <= 0:
        return rate
    return keras.optimizers.schedules.PolynomialDecay(rate / 10, decay_steps=steps, end_learning_rate=rate, power=1.0)


def make_optimizer(name: str, learning_rate, weight_decay: float = 0.0):
    """A Keras optimizer by its config name (training and compression fine-tuning share the choice);
    ``learning_rate`` a rate or a schedule. Adam with ``weight_decay`` is AdamW (decoupled decay)."""
    if name == "adam" and weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    optimizer = {"adadelta": keras.optimizers.Adadelta, "adam": keras.optimizers.Adam}[name]
    return optimizer(learning_rate=learning_rate, weight_decay=weight_decay or None)
