"""MLSP's learning-rate schedule with best-model reloading and early stopping.

Hosu et al. 2019, sec. 3.3: "The initial learning rate [...] is 1e-4, which is
divided by 10 every 20 epochs, or when the loss does not decrease within 5
epochs, whichever comes first.  The lowest learning rate we used was 1e-6.
At each change in learning rate the previous best model is loaded."  The
validation set "is used to choose the best performing model, i.e. the one
with minimum loss, via early stopping": at the lowest rate, training stops
after ``stop_patience`` epochs without a lower validation loss, and the best
weights are restored at the end.

The rule itself (:class:`StepPlateauRule`) is plain Python, so it can be
checked on a scripted sequence of losses; :class:`MLSPSchedule` applies it to
a Keras model as a callback (backend-agnostic: ``keras.*`` only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np

__all__ = ["StepPlateauRule", "Decision", "MLSPSchedule", "PhasedSchedule"]


@dataclass
class Decision:
    """What the rule says after one epoch."""

    lr: float  # the rate used in this epoch
    improved: bool  # this epoch's loss is the lowest so far
    next_lr: float  # the rate for the next epoch
    reload_best: bool  # the rate changes: load the best weights first
    stop: bool  # no improvement at the lowest rate for stop_patience epochs


@dataclass
class StepPlateauRule:
    """Divide the rate by ``1/factor`` every ``step_epochs`` epochs at one rate, or after
    ``patience`` epochs without a lower loss, whichever comes first, down to ``min_lr``;
    at ``min_lr`` stop after ``stop_patience`` epochs without improvement (MLSP sec. 3.3).

    ``step_epochs=None`` / ``patience=None`` switch that trigger off;
    ``stop_patience=None`` never stops (training runs to its epoch limit).
    ``min_delta``: a loss must be lower than the best by more than this to count.
    """

    initial_lr: float = 1e-4
    factor: float = 0.1
    step_epochs: int | None = 20
    patience: int | None = 5
    min_lr: float = 1e-6
    stop_patience: int | None = 5
    min_delta: float = 0.0
    # state
    lr: float = field(init=False)
    best: float = field(init=False, default=math.inf)
    best_epoch: int = field(init=False, default=-1)
    wait: int = field(init=False, default=0)  # epochs since the best loss
    epochs_at_lr: int = field(init=False, default=0)
    epoch: int = field(init=False, default=-1)

    def __post_init__(self):
        if not 0 < self.factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {self.factor}")
        if self.min_lr > self.initial_lr:
            raise ValueError(f"min_lr {self.min_lr} is above initial_lr {self.initial_lr}")
        self.lr = float(self.initial_lr)

    @property
    def at_lowest(self) -> bool:
        return self.lr <= self.min_lr * (1 + 1e-6)

    def update(self, loss: float) -> Decision:
        """Feed one epoch's validation loss; returns the decision for the next epoch."""
        self.epoch += 1
        lr = self.lr
        improved = bool(np.isfinite(loss) and loss < self.best - self.min_delta)
        if improved:
            self.best, self.best_epoch, self.wait = float(loss), self.epoch, 0
        else:
            self.wait += 1
        self.epochs_at_lr += 1
        reload, stop = False, False
        if self.at_lowest:
            stop = self.stop_patience is not None and self.wait >= self.stop_patience
        else:
            by_step = self.step_epochs is not None and self.epochs_at_lr >= self.step_epochs
            by_plateau = self.patience is not None and self.wait >= self.patience
            if by_step or by_plateau:
                new = self.lr * self.factor
                self.lr = self.min_lr if new <= self.min_lr * (1 + 1e-6) else new
                self.epochs_at_lr, self.wait = 0, 0
                reload = True
        return Decision(lr=lr, improved=improved, next_lr=self.lr, reload_best=reload, stop=stop)


class MLSPSchedule(keras.callbacks.Callback):
    """Keras callback applying :class:`StepPlateauRule` (MLSP sec. 3.3).

    Sets the optimizer's rate at the start of every epoch, keeps the best
    weights in memory, reloads them whenever the rate changes and at the end
    of training, stops training when the lowest rate stops improving, and
    records the rate of every epoch as ``lr`` in the logs (hence in the
    ``History``).  ``monitor`` falls back to ``loss`` when there is no
    validation data.
    """

    def __init__(self, initial_lr=1e-4, factor=0.1, step_epochs=20, patience=5, min_lr=1e-6,
                 stop_patience=5, min_delta=0.0, monitor="val_loss", restore_best=True,
                 verbose=0):
        super().__init__()
        self.rule_args = dict(initial_lr=initial_lr, factor=factor, step_epochs=step_epochs,
                              patience=patience, min_lr=min_lr, stop_patience=stop_patience,
                              min_delta=min_delta)
        self.monitor, self.restore_best, self.verbose = monitor, restore_best, verbose
        self.rule = StepPlateauRule(**self.rule_args)
        self.best_weights = None
        self.lr_history: list[float] = []
        self.events: list[str] = []

    def _set_lr(self, lr):
        self.model.optimizer.learning_rate = float(lr)

    def _say(self, text):
        self.events.append(text)
        if self.verbose:
            print(text)

    def on_train_begin(self, logs=None):
        self.rule = StepPlateauRule(**self.rule_args)
        self.best_weights, self.lr_history, self.events = None, [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._set_lr(self.rule.lr)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        loss = logs.get(self.monitor, logs.get("loss", math.nan))
        d = self.rule.update(float(loss))
        logs["lr"] = d.lr
        self.lr_history.append(d.lr)
        if d.improved:
            self.best_weights = self.model.get_weights()
        if d.reload_best:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            self._say(f"epoch {epoch + 1}: lr {d.lr:.1e} -> {d.next_lr:.1e}, reloaded the best "
                      f"model (epoch {self.rule.best_epoch + 1}, {self.monitor} {self.rule.best:.4g})")
        if d.stop:
            self._say(f"epoch {epoch + 1}: no lower {self.monitor} for {self.rule.stop_patience} "
                      f"epochs at the lowest rate {d.lr:.1e}; stopping")
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    @property
    def best_epoch(self) -> int:
        """0-based epoch of the lowest monitored loss (-1 before training)."""
        return self.rule.best_epoch


class PhasedSchedule(MLSPSchedule):
    """:class:`MLSPSchedule` that survives a restart of ``fit`` (the delayed-entry
    precision switch, :mod:`.precision`): its state is kept across ``fit`` calls, and
    while ``pausing`` the best weights are not restored at the end of a call (call
    ``on_train_end`` once more when training is really over).  With a single ``fit``
    and ``pausing`` off it is :class:`MLSPSchedule`."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._started, self.pausing, self.stopped = False, False, False

    def on_train_begin(self, logs=None):
        if not self._started:
            super().on_train_begin(logs)
            self._started = True

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.stopped = bool(self.model.stop_training)

    def on_train_end(self, logs=None):
        if not self.pausing:
            super().on_train_end(logs)
