"""Mixed-precision training and M+MNet's delayed entry (He et al. 2025, sec. 3.3, Eq. 5).

``precision``:

- ``float32``: plain training;
- ``mixed_float16`` / ``mixed_bfloat16``: the model is built under the Keras mixed
  policy (float16/bfloat16 compute, float32 variables), its output is cast back to
  float32 (loss in float32, as in the paper), and for float16 the optimizer is a
  ``keras.optimizers.LossScaleOptimizer`` (dynamic loss scale 2^tau: a step whose
  gradients overflow is skipped and the scale halved, the scale doubles after 2000
  clean steps -- the paper's "abandon the current batch and reduce tau"; the master
  weights stay float32).  bfloat16 has float32's range and needs no loss scaling;
- ``auto``: the paper's delayed entry.  Train in float32 with a gradient monitor
  (:class:`MonitoredAdam`); an epoch *overflows* if any gradient of any step, cast to
  float16, would be inf / nan, i.e. non-finite or max |g| > 65504.  After epoch E
  (E = epochs so far, 1-based), with O the overflowing epochs among the last five,

      theta = lambda_1 O^2 - lambda_2 E          (Eq. 5; lambda_1 = 1, lambda_2 = 0.2)

  and theta <= 0 switches to ``mixed_float16`` from the next epoch: the model is
  rebuilt under the mixed policy, the weights (and Adam's moments) copied over, and
  training continues.  The switch epoch is recorded in the history
  (``mixed_precision`` per epoch, 0/1; ``grad_absmax``, ``grad_overflow``, ``theta``
  for the float32 epochs) and returned.

Reading: "the five most recent epochs" includes the epoch just finished; with fewer
than five epochs so far all of them count.  So with no overflow at all the switch
comes after the first epoch (theta = -0.2), one overflow among the last five needs
E >= 5, two need E >= 20.  Backend-agnostic: the monitor is an optimizer variable
updated in ``apply`` (captured by JAX's stateless apply as well).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras
from keras import ops

from .config import PRECISIONS

__all__ = ["PRECISIONS", "FP16_MAX", "DelayedEntryRule", "MonitoredAdam", "OverflowMonitor",
           "make_optimizer", "policy_scope", "copy_optimizer_state", "with_float32_output"]

FP16_MAX = 65504.0
LAMBDA1, LAMBDA2, WINDOW = 1.0, 0.2, 5


@dataclass
class DelayedEntryRule:
    """Eq. 5 of M+MNet on a sequence of per-epoch overflow flags (plain Python)."""

    lambda1: float = LAMBDA1
    lambda2: float = LAMBDA2
    window: int = WINDOW
    flags: list = field(default_factory=list)
    switch_epoch: int | None = None  # 0-based epoch that starts in mixed precision

    def update(self, overflowed: bool) -> tuple[float, bool]:
        """Feed one finished epoch; returns (theta, switch from the next epoch)."""
        self.flags.append(bool(overflowed))
        e = len(self.flags)
        o = sum(self.flags[-self.window:])
        theta = self.lambda1 * o * o - self.lambda2 * e
        switch = theta <= 0 and self.switch_epoch is None
        if switch:
            self.switch_epoch = e
        return theta, switch


def overflowed(grad_absmax: float) -> bool:
    """True when a gradient with this max |g| (inf for nan) would overflow float16."""
    return not (grad_absmax == grad_absmax) or grad_absmax > FP16_MAX


@keras.saving.register_keras_serializable(package="mlsp")
class MonitoredAdam(keras.optimizers.Adam):
    """Adam that also keeps ``grad_absmax``: the largest |g| seen since its last reset
    (non-finite gradients count as inf)."""

    def build(self, var_list):
        super().build(var_list)
        self.grad_absmax = self.add_variable(shape=(), initializer="zeros", dtype="float32",
                                             name="grad_absmax")

    def apply(self, grads, trainable_variables=None):
        out = super().apply(grads, trainable_variables)
        m = ops.convert_to_tensor(0.0, "float32")
        for g in grads:
            if g is None:
                continue
            g = ops.abs(ops.cast(g, "float32"))
            g = ops.where(ops.isfinite(g), g, float("inf"))
            m = ops.maximum(m, ops.max(g))
        self.grad_absmax.assign(ops.maximum(self.grad_absmax, m))
        return out


class OverflowMonitor(keras.callbacks.Callback):
    """Per-epoch gradient-overflow check and the delayed-entry rule (Eq. 5).

    Adds ``grad_absmax``, ``grad_overflow`` and ``theta`` to the epoch logs; when the
    rule fires it stops training so the caller can rebuild in mixed precision."""

    def __init__(self, rule: DelayedEntryRule | None = None, verbose=0):
        super().__init__()
        self.rule = rule or DelayedEntryRule()
        self.verbose = verbose
        self.switch = False

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        if not getattr(opt, "built", False) or not hasattr(opt, "grad_absmax"):
            opt.build(self.model.trainable_variables)
        opt.grad_absmax.assign(0.0)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        gmax = float(keras.ops.convert_to_numpy(self.model.optimizer.grad_absmax))
        over = overflowed(gmax)
        theta, switch = self.rule.update(over)
        logs.update(grad_absmax=gmax, grad_overflow=float(over), theta=theta)
        if switch:
            self.switch = True
            self.model.stop_training = True
            if self.verbose:
                print(f"epoch {epoch + 1}: theta = {theta:.2f} <= 0 (overflow in "
                      f"{sum(self.rule.flags[-self.rule.window:])} of the last epochs); "
                      f"switching to mixed_float16")


class policy_scope:
    """Temporarily set the global Keras dtype policy (layers built inside use it)."""

    def __init__(self, policy):
        self.policy = policy

    def __enter__(self):
        self.old = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.policy)

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.old)


def with_float32_output(model):
    """``model`` with its output cast to float32 (mixed policies: the loss in float32)."""
    inp = keras.Input(model.input_shape[1:], dtype="float32", name="features")
    out = keras.layers.Activation("linear", dtype="float32", name="output_float32")(model(inp))
    return keras.Model(inp, out, name=model.name)


def make_optimizer(policy: str, lr: float, monitored: bool = False):
    """Adam (``MonitoredAdam`` for the float32 phase of ``auto``), loss-scaled for float16."""
    if monitored:
        return MonitoredAdam(learning_rate=lr)
    opt = keras.optimizers.Adam(learning_rate=lr)
    if policy == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(opt)
    return opt


def copy_optimizer_state(src, dst, variables):
    """Copy Adam's step count and moments from ``src`` to ``dst`` (built for ``variables``)."""
    src = getattr(src, "inner_optimizer", src)
    inner = getattr(dst, "inner_optimizer", dst)
    if not inner.built:
        inner.build(variables)
    if not getattr(dst, "built", True):
        dst.build(variables)
    inner.iterations.assign(src.iterations)
    for a_list, b_list in ((src._momentums, inner._momentums),
                           (src._velocities, inner._velocities)):
        for a, b in zip(a_list, b_list):
            if tuple(a.shape) == tuple(b.shape):
                b.assign(a)
