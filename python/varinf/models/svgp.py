"""Stochastic variational GP (Hensman, Fusi & Lawrence 2013) with any likelihood; docs/math.md
section 7."""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._constants import KUU_JITTER
from .._loader import core as _core
from .._validation import as_choice, as_finite_float, as_float, as_matrix, as_positive_int, is_dask, is_integer
from ..inducing import KMEANS_SAMPLE, METHODS, place_inducing, warn_kuu_jitter
from ..kernels import Kernel
from ..likelihoods import Likelihood
from ..parameters import RAW_MIN, Parameter, ParameterVector
from ..progress import Progress
from ..serialization import (
    FormatError,
    config_number,
    config_value,
    dump_component,
    load_component,
    register,
    restore_trainable,
    save_parameters,
)
from ._common import ConstantMean, Persistent, lazy_on_dask, make_mean
from ._regression import sample_joint

# KUU_JITTER is read from this module at call time (tests patch it here).
__all__ = ["SVGP", "KUU_JITTER"]

# Seconds of training between returns to Python (progress, callback, early stop).
_REPORT_SECONDS = 0.25


@register
class SVGP(ConstantMean, Persistent):
    """Sparse variational GP: q(u) = N(q_mu, q_sqrt q_sqrt^T) at m inducing inputs Z
    (docs/math.md section 7.1).

    Parameters
    ----------
    kernel : varinf.kernels.Kernel
    likelihood : varinf.likelihoods.Likelihood
    Z : array_like [m, d], or an int m: the inducing inputs are then placed by ``inducing``
        among (a sample of) the rows of the X first given to ``fit``
    num_data : int, the number of training points n (minibatch terms are scaled by n / B)
    whiten : bool, parametrise q(v) with u = L v, Kuu = L L^T (default, as GPflow/GPyTorch)
    q_diag : bool, a diagonal q_sqrt [m] instead of a lower-triangular [m, m] one
    mean : None or "zero", "constant" (learned, starts at 0) or a number (learned, starts there)
    train_Z : bool, whether ``fit`` moves the inducing inputs
    inducing : for an int Z, ``"kmeans"`` (k-means centres) or ``"greedy-variance"`` (the rows of
        greatest conditional variance under the initial kernel, Burt et al. 2020; varinf.inducing)

    The C++ core evaluates the ELBO on a batch and its gradient with respect to q_mu, q_sqrt,
    Z, the kernel, the likelihood and the mean in one call; ``fit`` runs the minibatch loop,
    the sampling and Adam in C++, returning to Python a few times a second.
    """

    def __init__(self, kernel: Kernel, likelihood: Likelihood, Z, num_data: int, whiten: bool = True,
                 q_diag: bool = False, mean=None, train_Z: bool = True, inducing: str = "kmeans"):
        if not isinstance(kernel, Kernel):
            raise ValueError(f"kernel must be a varinf.kernels.Kernel, got {type(kernel).__name__}")
        if not isinstance(likelihood, Likelihood):
            raise ValueError(f"likelihood must be a varinf.likelihoods.Likelihood, got {type(likelihood).__name__}")
        self.kernel = kernel
        self.likelihood = likelihood
        self.num_data = as_positive_int(num_data, "num_data")
        self.whiten = bool(whiten)
        self.q_diag = bool(q_diag)
        self._train_Z = bool(train_Z)
        self.inducing = as_choice(inducing, "inducing", METHODS)
        self._mean = make_mean(mean, np.zeros(1))  # "constant" starts at 0
        self.elbo_history_ = np.zeros(0)
        if is_integer(Z):
            self._num_inducing = as_positive_int(Z, "Z")
            self._Z = None
        else:
            self._set_inducing(as_matrix(Z, "Z"))

    def _set_inducing(self, Z):
        """Creates Z and q(u) = N(0, I) (the prior, in the whitened frame)."""
        self.kernel.check_input(Z, "Z")
        m = Z.shape[0]
        self._Z = Parameter("Z", Z.ravel(), lower=None, trainable=self._train_Z)  # Z [m, d], flat
        self._Z_shape = Z.shape
        self._q_mu = Parameter("q_mu", np.zeros(m), lower=None)  # [m]
        # q_sqrt: [m] when q_diag, else the lower triangle of [m, m] row by row [m (m + 1) / 2]
        q_sqrt = np.ones(m) if self.q_diag else np.eye(m)[np.tril_indices(m)]
        self._q_sqrt = Parameter("q_sqrt", q_sqrt, lower=None)

    def _require_inducing(self):
        if self._Z is None:
            raise ValueError(f"Z was given as a number ({self._num_inducing}): call fit(X, y) first, "
                             f"which places the inducing inputs among the rows of X ({self.inducing})")

    # --- parameters ------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        """The number of input columns d (known once Z is)."""
        self._require_inducing()
        return self._Z_shape[1]

    @property
    def Z(self) -> np.ndarray:
        """The inducing inputs [m, d] (a copy)."""
        self._require_inducing()
        return self._Z.value.reshape(self._Z_shape).copy()

    @Z.setter
    def Z(self, value):
        self._require_inducing()
        value = as_matrix(value, "Z", d=self._Z_shape[1])
        if value.shape != self._Z_shape:
            raise ValueError(f"Z must keep its shape {self._Z_shape}, got {value.shape}")
        self._Z.value = value.ravel()

    @property
    def q_mu(self) -> np.ndarray:
        self._require_inducing()
        return self._q_mu.value.copy()

    @q_mu.setter
    def q_mu(self, value):
        self._require_inducing()
        self._q_mu.value = np.asarray(value, dtype=float).ravel()

    @property
    def q_sqrt(self) -> np.ndarray:
        """[m, m] lower triangular, or [m] when q_diag."""
        self._require_inducing()
        if self.q_diag:
            return self._q_sqrt.value.copy()
        m = self._Z_shape[0]
        out = np.zeros((m, m))  # [m, m]
        out[np.tril_indices(m)] = self._q_sqrt.value
        return out

    @q_sqrt.setter
    def q_sqrt(self, value):
        self._require_inducing()
        m = self._Z_shape[0]
        value = np.asarray(value, dtype=float)
        shape = (m,) if self.q_diag else (m, m)
        if value.shape != shape:
            raise ValueError(f"q_sqrt must have shape {shape}, got {value.shape}")
        self._q_sqrt.value = value if self.q_diag else value[np.tril_indices(m)]

    @property
    def parameters(self) -> list:
        """Every parameter in gradient order: kernel, likelihood, mean (if any), q_mu, q_sqrt, Z."""
        self._require_inducing()
        return (self.kernel.parameters + self.likelihood.parameters
                + ([self._mean] if self._mean is not None else []) + [self._q_mu, self._q_sqrt, self._Z])

    @property
    def trainable_parameters(self) -> list:
        return ParameterVector(self.parameters).unique

    def __repr__(self):
        m = self._num_inducing if self._Z is None else self._Z_shape[0]
        return (f"SVGP(m={m}, num_data={self.num_data}, kernel={self.kernel!r}, "
                f"likelihood={self.likelihood!r}, whiten={self.whiten}, q_diag={self.q_diag})")

    # --- the C++ views ---------------------------------------------------------------------------
    def _layout(self):
        """The C++ layout of the values over the unconstrained vector x (docs/math.md section
        7.12), and the vector. Each value (every parameter's entries, in gradient order) is either
        entry ``index`` of x (trainable; tied parameters share entries) or fixed at ``fixed``;
        ``lower`` [x size] is the softplus bound of each entry of x (NaN: untransformed)."""
        params = self.parameters
        pv = ParameterVector(params)
        offsets, start = {}, 0
        for p in pv.unique:
            offsets[id(p)] = start
            start += p.size
        index, fixed = [], []
        for p in params:
            if id(p) in offsets:
                index.append(np.arange(offsets[id(p)], offsets[id(p)] + p.size))
                fixed.append(np.zeros(p.size))
            else:
                index.append(np.full(p.size, -1))
                fixed.append(p.value.ravel())
        lower = [np.full(p.size, np.nan if p.lower is None else p.lower) for p in pv.unique]
        m, d = self._Z_shape
        layout = _core.sparse.SVGPLayout(self.kernel.core(), self.likelihood.core(), m, d, self._mean is not None,
                                  self.whiten, self.q_diag, np.concatenate(index).astype(np.int64),
                                  np.concatenate(fixed), np.concatenate(lower) if lower else np.zeros(0),
                                  RAW_MIN, float(self.num_data), KUU_JITTER)
        return layout, pv

    def _args(self):
        self._require_inducing()
        return _core.sparse.SVGPArgs(self.kernel.core(), self.kernel.theta(), self.likelihood.core(),
                              self.likelihood.theta(), self.Z, self._q_mu.value, self.q_sqrt,
                              self.whiten, self.q_diag, self.mean, float(self.num_data), KUU_JITTER)

    def _data(self, X, y):
        """X [n, d] and y [n] of a batch, validated once."""
        X = as_matrix(X, "X", d=self.input_dim)
        self.kernel.check_input(X, "X")
        return X, self.likelihood.check_targets(y, "y", n=X.shape[0])

    # --- objective ---------------------------------------------------------------------------
    def elbo(self, X, y, return_grad: bool = False):
        """The ELBO with the likelihood terms of the batch (X, y) scaled by num_data / batch size
        (the full-data ELBO when the batch is all the data); with ``return_grad`` also its
        gradient with respect to the unconstrained values of ``trainable_parameters`` (docs/math.md
        sections 7.4 and 7.5). Dask arrays X and y are evaluated chunk by chunk where they lie
        (varinf.dask)."""
        if is_dask(X) or is_dask(y):
            from ..dask._svgp import full_elbo
            value, grad, jitter = full_elbo(self, X, y)
        else:
            X, y = self._data(X, y)
            layout, pv = self._layout()
            value, grad, _, jitter = _core.sparse.svgp_elbo_grad_x(layout, pv.get(), X, y)
        warn_kuu_jitter(jitter, KUU_JITTER)
        return (value, grad) if return_grad else value

    # --- training ------------------------------------------------------------------------------
    def fit(self, X, y, iterations: int | None = None, epochs: int | None = None, batch_size: int | None = None,
            learning_rate: float = 0.01, natgrad: bool = False, gamma: float = 0.1, seed=None, callback=None,
            progress: bool = True, client=None):
        """Adam on minibatches of (X, y), in C++.

        ``iterations`` steps, or ``epochs`` passes over the data (n // batch_size steps each;
        batch_size defaults to min(n, 256));
        1000 steps when neither is given. With ``natgrad``, q(u) takes natural-gradient steps of
        size ``gamma`` (Salimbeni et al. 2018; gamma = 1 on the full batch with a Gaussian
        likelihood jumps to the optimal q(u)) and Adam moves the rest.
        ``callback(model, step, elbo)`` is called a few times a second with the model's
        parameters current; returning True stops training. Training that diverges (an ELBO or
        gradient that is not finite, or an ELBO collapsing far below where the fit started:
        more than ten times its starting magnitude plus ten nats per datum) stops with a
        RuntimeWarning naming the step and the remedy, and the parameters are those of the last
        good step. Raw (unconstrained) values of positive parameters stay at or above
        ``varinf.parameters.RAW_MIN``, where they can still move (docs/math.md sections 7.10-7.12).

        With dask arrays X and y (chunked by rows), training runs on the Dask cluster of
        ``client`` (default: the active distributed.Client) by synchronous data-parallel steps:
        each worker evaluates its rows of every minibatch, the same minibatches as in one
        process with this seed (docs/math.md section 10.3; varinf.dask._svgp).
        """
        d = None if self._Z is None else self._Z_shape[1]
        seed64 = int(np.random.default_rng(seed).integers(2 ** 63))
        if is_dask(X) or is_dask(y):
            from ..dask._svgp import Shards
            data = Shards(self, X, y, d, client)
            X = data.X
        else:
            X = as_matrix(X, "X", d=d)  # [n, d]
        if self._Z is None:
            sample = X if not is_dask(X) else data.sample(KMEANS_SAMPLE, seed)
            self._set_inducing(place_inducing(sample, self._num_inducing, seed, self.inducing, self.kernel))
        self.kernel.check_input(X, "X")
        n = X.shape[0]
        if not is_dask(X):
            y = self.likelihood.check_targets(y, "y", n=n)  # [n]
        batch_size = min(n, 256) if batch_size is None else as_positive_int(batch_size, "batch_size")
        if batch_size > n:
            raise ValueError(f"batch_size must be at most the number of rows of X ({n}), got {batch_size}")
        if iterations is not None and epochs is not None:
            raise ValueError("give iterations or epochs, not both")
        if epochs is not None:
            iterations = as_positive_int(epochs, "epochs") * max(1, n // batch_size)
        iterations = 1000 if iterations is None else as_positive_int(iterations, "iterations")
        learning_rate = as_finite_float(learning_rate, "learning_rate", lower=0.0)
        gamma = as_finite_float(gamma, "gamma", lower=0.0, upper=1.0) if natgrad else as_float(gamma, "gamma")
        layout, pv = self._layout()
        trainer = _core.sparse.SVGPTrainer(layout, pv.get(), learning_rate, 0.9, 0.999, 1e-8, seed64,
                                    gamma if natgrad else 0.0)
        if is_dask(X):
            data.start(seed64, batch_size)
            run = lambda steps, done: data.run(trainer, steps, done)  # noqa: E731
        else:
            run = lambda steps, done: trainer.run(X, y, batch_size, steps)  # noqa: E731
        history = [self.elbo_history_]
        bar = Progress(total=iterations, enabled=progress, label="ELBO / n")
        chunk, done = 10, 0
        try:
            while done < iterations:
                steps = min(chunk, iterations - done)
                start = time.perf_counter()
                elbos = run(steps, done)
                elapsed = time.perf_counter() - start
                pv.set(trainer.x)
                history.append(elbos)
                done += elbos.size
                if elbos.size:
                    bar.update(elbos.size, elbos[-1] / self.num_data)
                if trainer.failed:
                    _warn_diverged(trainer, learning_rate, gamma if natgrad else None)
                    break
                if callback is not None and elbos.size and callback(self, done, float(elbos[-1])):
                    break
                chunk = int(np.clip(steps * _REPORT_SECONDS / max(elapsed, 1e-6), 1, 10000))
        finally:
            pv.set(trainer.x)  # also after an exception: the last finite parameters
            bar.close()
            self.elbo_history_ = np.concatenate(history)
        return self

    # --- predictions ---------------------------------------------------------------------------
    def _new_inputs(self, Xnew):
        Xnew = as_matrix(Xnew, "Xnew", d=self.input_dim)
        self.kernel.check_input(Xnew, "Xnew")
        return Xnew

    @lazy_on_dask(outputs=2)
    def predict_f(self, Xnew, full_cov: bool = False):
        """Latent predictive mean [n*] and variance [n*] (or covariance [n*, n*]) (docs/math.md
        section 7.9)."""
        return self._predict_f(self._new_inputs(Xnew), full_cov)

    def _predict_f(self, Xnew, full_cov: bool = False):
        mean, var = _core.sparse.svgp_predict(self._args(), Xnew, bool(full_cov))
        if not full_cov:
            np.maximum(var, 0.0, out=var)  # rounding can make a near-zero variance negative
        return mean, var

    @lazy_on_dask(outputs=2)
    def predict_y(self, Xnew):
        """Predictive mean and variance of y* (class probabilities for Bernoulli, rates for
        Poisson)."""
        mean, var = self.predict_f(Xnew)
        return self.likelihood._predict_mean_and_var(mean, var)

    @lazy_on_dask(outputs=1)
    def predict_log_density(self, Xnew, ynew) -> np.ndarray:
        """log p(y* | data) for each test point [n*]."""
        Xnew = self._new_inputs(Xnew)
        ynew = self.likelihood.check_targets(ynew, "ynew", n=Xnew.shape[0])
        mean, var = self._predict_f(Xnew)
        return self.likelihood._predict_log_density(ynew, mean, var)

    def predict_f_samples(self, Xnew, num_samples: int = 1, seed=None) -> np.ndarray:
        """Joint samples of the latent function at Xnew: [num_samples, n*]."""
        num_samples = as_positive_int(num_samples, "num_samples")
        mean, cov = self.predict_f(Xnew, full_cov=True)
        return sample_joint(mean, cov, num_samples, seed)

    # --- saving (varinf.serialization) ------------------------------------------------------------
    def _save_state(self):
        """config ``{"kernel": spec, "likelihood": spec, "num_data", "whiten", "q_diag", "train_Z",
        "has_mean", "trainable": {"mean", "q_mu", "q_sqrt"}, "num_inducing", "inducing"}``
        (``num_inducing`` is null once Z is placed, the number m before; ``inducing`` how Z will be
        placed, absent in files of varinf before it); arrays: the kernel's under ``kernel/``, the
        likelihood's under ``likelihood/``, ``elbo_history`` [steps], ``mean`` (if any) and, once Z
        is placed, ``Z`` [m, d], ``q_mu`` [m], ``q_sqrt`` ([m] when q_diag, else [m, m])."""
        kernel, arrays = dump_component(self.kernel, "kernel/")
        likelihood, likelihood_arrays = dump_component(self.likelihood, "likelihood/")
        arrays.update(likelihood_arrays, elbo_history=self.elbo_history_)
        trainable, values = save_parameters(self._own_parameters())
        arrays.update(values)
        config = {"kernel": kernel, "likelihood": likelihood, "num_data": self.num_data, "whiten": self.whiten,
                  "q_diag": self.q_diag, "train_Z": self._train_Z if self._Z is None else self._Z.trainable,
                  "has_mean": self._mean is not None, "trainable": trainable, "num_inducing": None,
                  "inducing": self.inducing}
        if self._Z is None:
            config["num_inducing"] = self._num_inducing
        else:
            arrays.update(Z=self.Z, q_mu=self.q_mu, q_sqrt=self.q_sqrt)
            trainable.update(q_mu=self._q_mu.trainable, q_sqrt=self._q_sqrt.trainable)
        return config, arrays

    @classmethod
    def _from_state(cls, config, arrays):
        kernel = load_component(config_value(config, "kernel", dict), arrays, "kernel/", Kernel)
        likelihood = load_component(config_value(config, "likelihood", dict), arrays, "likelihood/", Likelihood)
        q_diag = config_value(config, "q_diag", bool)
        fitted = config.get("num_inducing") is None
        if fitted:  # every shape is checked before any data are read
            m, _ = arrays.shape("Z", (None, None))
            q_mu, q_sqrt = arrays.take("q_mu", (m,)), arrays.take("q_sqrt", (m,) if q_diag else (m, m))
        Z = arrays.take("Z") if fitted else config_number(config, "num_inducing", int, minimum=1)
        model = cls(kernel, likelihood, Z, config_number(config, "num_data", int, minimum=1),
                    whiten=config_value(config, "whiten", bool), q_diag=q_diag, mean=cls._saved_mean(config, arrays),
                    train_Z=config_value(config, "train_Z", bool), inducing=_saved_method(config))
        params = model._own_parameters()
        if fitted:
            model.q_mu, model.q_sqrt = q_mu, q_sqrt
            params += [model._q_mu, model._q_sqrt]
        restore_trainable(params, config_value(config, "trainable", dict))
        model.elbo_history_ = arrays.take("elbo_history", (None,)).copy()
        return model


def _saved_method(config) -> str:
    """The saved placement of the inducing inputs ("kmeans" in files that predate the choice)."""
    method = config.get("inducing", "kmeans")
    if method not in METHODS:
        raise FormatError(f"inducing must be one of {METHODS}, got {method!r}")
    return method


def _warn_diverged(trainer, learning_rate, gamma):
    """The warning when the C++ trainer stopped at a divergence (docs/math.md section 7.12)."""
    what = ("collapsed far below its starting value" if trainer.collapsed else "was not finite")
    remedy = f"a smaller learning_rate (it was {learning_rate:g})"
    if gamma is not None:
        remedy += f" or a smaller gamma (it was {gamma:g})"
    warnings.warn(f"training diverged: the ELBO {what} at step {trainer.failed_step} of this fit; training "
                  f"stopped and the parameters are those of the last good step. Try {remedy}.",
                  RuntimeWarning, stacklevel=3)
