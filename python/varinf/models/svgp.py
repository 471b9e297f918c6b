"""Stochastic variational GP (Hensman, Fusi & Lawrence 2013) with any likelihood; docs/math.md
section 7."""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._constants import KUU_JITTER, KUU_JITTER_FLOAT32
from .._loader import core as _core
from .._validation import (_as_float_array, as_choice, as_finite_float, as_float, as_matrix, as_positive_int, is_dask,
                           is_integer)
from ..inducing import KMEANS_SAMPLE, METHODS, place_inducing, warn_kuu_jitter
from ..kernels import Kernel, LinearCoregionalization, _LatentKernels
from ..likelihoods import Likelihood
from ..parameters import RAW_MIN, Parameter, ParameterVector, distinct
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

# KUU_JITTER and KUU_JITTER_FLOAT32 are read from this module at call time (tests patch them here).
__all__ = ["SVGP", "Float32Warning", "KUU_JITTER", "KUU_JITTER_FLOAT32"]

# Seconds of training between returns to Python (progress, callback, early stop).
_REPORT_SECONDS = 0.25

# Nats per datum by which float32 may move the ELBO from its float64 value before fit warns: a
# tenth of the 0.01 per datum that separates fits of different quality (docs/math.md 7.14).
FLOAT32_TOLERANCE = 1e-3


class Float32Warning(UserWarning):
    """dtype=float32 has lost too many digits for this model: use float64."""


@register
class SVGP(ConstantMean, Persistent):
    """Sparse variational GP: q(u) = N(q_mu, q_sqrt q_sqrt^T) at m inducing inputs Z
    (docs/math.md section 7.1), for one latent GP or several (section 11.1).

    Parameters
    ----------
    kernel : varinf.kernels.Kernel (shared by the latent GPs), or for several latent GPs
        ``varinf.kernels.SeparateIndependent([k_1, ..., k_L])`` (one kernel each) or
        ``varinf.kernels.LinearCoregionalization([k_1, ..., k_L], W)`` (P outputs g = W f)
    likelihood : varinf.likelihoods.Likelihood
    Z : array_like [m, d] (shared by the latent GPs) or [L, m, d] (one set each), or an int m:
        the inducing inputs are then placed by ``inducing`` among (a sample of) the rows of the X
        first given to ``fit``
    num_data : int, the number of training points n (minibatch terms are scaled by n / B)
    num_latent_gps : int L, the number of latent GPs (default: what the kernel or the likelihood
        implies, else 1)
    whiten : bool, parametrise q(v) with u = L v, Kuu = L L^T (default, as GPflow/GPyTorch)
    q_diag : bool, a diagonal q_sqrt [m] instead of a lower-triangular [m, m] one
    mean : None or "zero", "constant" (learned, starts at 0) or a number (learned, starts there);
        with several latent GPs one constant each
    train_Z : bool, whether ``fit`` moves the inducing inputs
    inducing : for an int Z, ``"kmeans"`` (k-means centres) or ``"greedy-variance"`` (the rows of
        greatest conditional variance under the initial kernel, Burt et al. 2020; varinf.inducing)
    dtype : ``np.float64`` (default) or ``np.float32`` (GPyTorch's default): the products on the
        minibatch, the O(m^2 B) part of a step, run in float32 with K(Z, Z)'s jitter raised to
        ``KUU_JITTER_FLOAT32``; the kernel, K(Z, Z)'s Cholesky factor, the KL, the sums over the
        batch and the parameters stay in float64 (docs/math.md section 7.14). Inputs stay float64.

    With several latent GPs q_mu is [m, L] and q_sqrt [L, m, m] (or [m, L] with q_diag),
    GPflow's layout; y is [n, P] for P outputs of a pointwise likelihood and [n] labels for the
    multi-class ones. The C++ core evaluates the ELBO on a batch and its gradient with respect
    to q_mu, q_sqrt, Z, the kernels, W, the likelihood and the mean in one call; ``fit`` runs
    the minibatch loop, the sampling and Adam in C++, returning to Python a few times a second.
    """

    def __init__(self, kernel, likelihood: Likelihood, Z, num_data: int, num_latent_gps: int | None = None,
                 whiten: bool = True, q_diag: bool = False, mean=None, train_Z: bool = True,
                 inducing: str = "kmeans", dtype=np.float64):
        if not isinstance(kernel, (Kernel, _LatentKernels)):
            raise ValueError(f"kernel must be a varinf.kernels.Kernel, SeparateIndependent or "
                             f"LinearCoregionalization, got {type(kernel).__name__}")
        if not isinstance(likelihood, Likelihood):
            raise ValueError(f"likelihood must be a varinf.likelihoods.Likelihood, got {type(likelihood).__name__}")
        self.kernel = kernel
        self.likelihood = likelihood
        self.num_latent_gps = _num_latent(kernel, likelihood, num_latent_gps)
        self._kernels = kernel.kernels if isinstance(kernel, _LatentKernels) else [kernel] * self.num_latent_gps
        self._mixing = kernel if isinstance(kernel, LinearCoregionalization) else None
        likelihood.check_latent(self.num_outputs)
        self.num_data = as_positive_int(num_data, "num_data")
        self.whiten = bool(whiten)
        self.q_diag = bool(q_diag)
        self._train_Z = bool(train_Z)
        self.inducing = as_choice(inducing, "inducing", METHODS)
        self.dtype = dtype
        self._mean = _latent_mean(mean, self.num_latent_gps)
        self.elbo_history_ = np.zeros(0)
        if is_integer(Z):
            self._num_inducing = as_positive_int(Z, "Z")
            self._Z = None
        else:
            self._set_inducing(_inducing_array(Z, self.num_latent_gps))

    @property
    def num_outputs(self) -> int:
        """The columns of f the likelihood reads: P with coregionalisation, else L."""
        return self._mixing.num_outputs if self._mixing is not None else self.num_latent_gps

    @property
    def _single(self) -> bool:
        """One latent GP read by a pointwise likelihood: 1-D y, q_mu, predictions (as before
        several latent GPs existed)."""
        return self.num_latent_gps == 1 and self._mixing is None and self.likelihood.latent_dim is None

    def _set_inducing(self, Z):
        """Creates Z ([m, d], or [L, m, d]) and q(u) = N(0, I) (the prior, in the whitened frame)."""
        for k in self._kernels:
            k.check_input(Z.reshape(-1, Z.shape[-1]), "Z")
        m, L = Z.shape[-2], self.num_latent_gps
        self._Z = Parameter("Z", Z.ravel(), lower=None, trainable=self._train_Z)  # Z, flat
        self._Z_shape = Z.shape
        self._q_mu = Parameter("q_mu", np.zeros(m * L), lower=None)  # [m, L] row-major
        # q_sqrt: [m, L] row-major when q_diag, else each latent GP's lower triangle of [m, m] row by row
        q_sqrt = np.ones(m * L) if self.q_diag else np.tile(np.eye(m)[np.tril_indices(m)], L)
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
        return self._Z_shape[-1]

    @property
    def num_inducing(self) -> int:
        return self._num_inducing if self._Z is None else self._Z_shape[-2]

    @property
    def Z(self) -> np.ndarray:
        """The inducing inputs [m, d] (or [L, m, d]) (a copy)."""
        self._require_inducing()
        return self._Z.value.reshape(self._Z_shape).copy()

    @Z.setter
    def Z(self, value):
        self._require_inducing()
        value = _as_float_array(value, "Z") if len(self._Z_shape) == 3 else as_matrix(value, "Z", d=self._Z_shape[1])
        if value.shape != self._Z_shape:
            raise ValueError(f"Z must keep its shape {self._Z_shape}, got {value.shape}")
        self._Z.value = value.ravel()

    @property
    def q_mu(self) -> np.ndarray:
        """[m, L] ([m] with one latent GP)."""
        self._require_inducing()
        return self._q_mu.value.copy() if self._single else self._q_mu.value.reshape(-1, self.num_latent_gps).copy()

    @q_mu.setter
    def q_mu(self, value):
        self._require_inducing()
        value = np.asarray(value, dtype=float)
        shape = (self.num_inducing,) if self._single else (self.num_inducing, self.num_latent_gps)
        if value.shape != shape and not (self._single and value.size == self.num_inducing):
            raise ValueError(f"q_mu must have shape {shape}, got {value.shape}")
        self._q_mu.value = value.ravel()

    def _q_sqrt_shape(self):
        m, L = self.num_inducing, self.num_latent_gps
        if self._single:
            return (m,) if self.q_diag else (m, m)
        return (m, L) if self.q_diag else (L, m, m)

    @property
    def q_sqrt(self) -> np.ndarray:
        """[L, m, m] lower triangular, or [m, L] when q_diag ([m, m] or [m] with one latent GP)."""
        self._require_inducing()
        if self.q_diag:
            return self._q_sqrt.value.reshape(self._q_sqrt_shape()).copy()
        m, L = self.num_inducing, self.num_latent_gps
        out = np.zeros((L, m, m))  # [L, m, m]
        rows, cols = np.tril_indices(m)
        out[:, rows, cols] = self._q_sqrt.value.reshape(L, -1)
        return out.reshape(self._q_sqrt_shape())

    @q_sqrt.setter
    def q_sqrt(self, value):
        self._require_inducing()
        value = np.asarray(value, dtype=float)
        shape = self._q_sqrt_shape()
        if value.shape != shape:
            raise ValueError(f"q_sqrt must have shape {shape}, got {value.shape}")
        if self.q_diag:
            self._q_sqrt.value = value.ravel()
        else:
            m = self.num_inducing
            rows, cols = np.tril_indices(m)
            self._q_sqrt.value = value.reshape(-1, m, m)[:, rows, cols].ravel()

    @property
    def parameters(self) -> list:
        """Every distinct parameter in gradient order: kernels (and W), likelihood, mean (if
        any), q_mu, q_sqrt, Z."""
        return distinct(self._value_parameters())

    def _groups(self) -> list:
        """(kernel, first, count) of each group of latent GPs that share a kernel and Z."""
        groups = []
        for l, k in enumerate(self._kernels):
            if groups and groups[-1][0] is k and len(self._Z_shape) == 2:
                groups[-1][2] += 1
            else:
                groups.append([k, l, 1])
        return [tuple(g) for g in groups]

    def _value_parameters(self) -> list:
        """The parameters in the C++ order of the values (docs/math.md section 11.1), a shared
        one once per place it is read."""
        self._require_inducing()
        groups = self._groups()
        Zs = [self._Z] * len(groups) if len(self._Z_shape) == 2 else [self._Z]
        return ([p for k, _, _ in groups for p in k.parameters] + self.likelihood.parameters
                + ([self._mixing._W] if self._mixing is not None else [])
                + ([self._mean] if self._mean is not None else []) + [self._q_mu, self._q_sqrt] + Zs)

    @property
    def trainable_parameters(self) -> list:
        return ParameterVector(self.parameters).unique

    def __repr__(self):
        latent = "" if self._single else f"num_latent_gps={self.num_latent_gps}, "
        precision = "" if self.dtype == np.float64 else ", dtype=float32"
        return (f"SVGP(m={self.num_inducing}, num_data={self.num_data}, {latent}kernel={self.kernel!r}, "
                f"likelihood={self.likelihood!r}, whiten={self.whiten}, q_diag={self.q_diag}{precision})")

    @property
    def dtype(self) -> type:
        """np.float64 or np.float32: the precision of the minibatch products (settable; any
        numpy spelling)."""
        return self._dtype

    @dtype.setter
    def dtype(self, value):
        self._dtype = _precision(value)

    @property
    def _jitter(self) -> float:
        """The jitter on K(Z, Z)'s diagonal, scaled to the precision of the batch products."""
        return KUU_JITTER if self.dtype == np.float64 else KUU_JITTER_FLOAT32

    # --- the C++ views ---------------------------------------------------------------------------
    def _layout(self, single: bool | None = None):
        """The C++ layout of the values over the unconstrained vector x (docs/math.md sections
        7.12 and 11.1), and the vector; the batch products in float32 when ``single`` (default:
        when the model's dtype is float32). Each value (every parameter's entries, in that order) is
        either entry ``index`` of x (trainable; tied and shared parameters share entries) or fixed
        at ``fixed``; ``lower`` [x size] is the softplus bound of each entry of x (NaN:
        untransformed)."""
        params = self._value_parameters()
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
        groups = [(k.core(), first, count) for k, first, count in self._groups()]
        layout = _core.sparse.SVGPLayout(
            groups, self.likelihood.latent_core(self.num_outputs), self.num_inducing, self.input_dim,
            self.num_latent_gps, 0 if self._mixing is None else self._mixing.num_outputs, self._mean is not None,
            self.whiten, self.q_diag, np.concatenate(index).astype(np.int64), np.concatenate(fixed),
            np.concatenate(lower) if lower else np.zeros(0), RAW_MIN, float(self.num_data), self._jitter,
            self.dtype == np.float32 if single is None else single)
        return layout, pv

    def _args(self):
        self._require_inducing()
        m, d, L = self.num_inducing, self.input_dim, self.num_latent_gps
        Z = self._Z.value.reshape(-1, m, d)  # [1 or L, m, d]
        groups = [(k.core(), k.theta(), Z[0] if Z.shape[0] == 1 else Z[first], first, count)
                  for k, first, count in self._groups()]
        q_sqrt = self.q_sqrt.reshape((m, L) if self.q_diag else (L, m, m))
        W = self._mixing.W if self._mixing is not None else np.zeros((0, 0))
        mean = np.atleast_1d(self._mean.value) if self._mean is not None else np.zeros(0)
        return _core.sparse.SVGPArgs(groups, self.likelihood.latent_core(self.num_outputs), self.likelihood.theta(),
                                     self._q_mu.value.reshape(m, L), q_sqrt, W, self.whiten, self.q_diag, mean,
                                     float(self.num_data), self._jitter, self.dtype == np.float32)

    def _targets(self, y, name: str, n: int):
        """y checked for this model: [n] for one output or labels, [n, P] for P outputs."""
        return self.likelihood.check_outputs(y, name, n, self.num_outputs)

    def _data(self, X, y):
        """X [n, d] and y ([n] or [n, P]) of a batch, validated once."""
        X = as_matrix(X, "X", d=self.input_dim)
        self._check_inputs(X, "X")
        return X, self._targets(y, "y", X.shape[0])

    def _check_inputs(self, X, name):
        for k in self._kernels:
            k.check_input(X, name)
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
        warn_kuu_jitter(jitter, self._jitter)
        return (value, grad) if return_grad else value

    # --- training ------------------------------------------------------------------------------
    def fit(self, X, y, iterations: int | None = None, epochs: int | None = None, batch_size: int | None = None,
            learning_rate: float = 0.01, natgrad: bool = False, gamma: float = 0.1, seed=None, callback=None,
            progress: bool = True, client=None):
        """Adam on minibatches of (X, y), in C++.

        ``iterations`` steps, or ``epochs`` passes over the data (n // batch_size steps each;
        batch_size defaults to min(n, 256));
        1000 steps when neither is given. With ``natgrad``, each latent GP's q(u) takes
        natural-gradient steps of size ``gamma`` (Salimbeni et al. 2018; gamma = 1 on the full
        batch with a Gaussian likelihood jumps to the optimal q(u)) and Adam moves the rest.
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
        d = None if self._Z is None else self._Z_shape[-1]
        seed64 = int(np.random.default_rng(seed).integers(2 ** 63))
        if is_dask(X) or is_dask(y):
            from ..dask._svgp import Shards
            data = Shards(self, X, y, d, client)
            X = data.X
        else:
            X = as_matrix(X, "X", d=d)  # [n, d]
        if self._Z is None:
            sample = X if not is_dask(X) else data.sample(KMEANS_SAMPLE, seed)
            self._set_inducing(place_inducing(sample, self._num_inducing, seed, self.inducing, self._kernels[0]))
        self._check_inputs(X, "X")
        n = X.shape[0]
        if not is_dask(X):
            y = self._targets(y, "y", n)  # [n] or [n, P]
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
        if self.dtype == np.float32 and not is_dask(X):
            self._check_float32(X[:batch_size], y[:batch_size])
        return self

    def _check_float32(self, X, y):
        """Warn (Float32Warning) when float32 moves the ELBO of the batch (X, y) by more than
        FLOAT32_TOLERANCE nats per datum from its float64 value with the same jitter: the
        products have lost too many digits for this model (a large m, a tiny noise or a badly
        conditioned K(Z, Z); docs/math.md section 7.14)."""
        layout, pv = self._layout()
        x = pv.get()
        single = _core.sparse.svgp_elbo_grad_x(layout, x, X, y)[0]
        double = _core.sparse.svgp_elbo_grad_x(self._layout(single=False)[0], x, X, y)[0]
        gap = abs(single - double) / self.num_data
        if not gap <= FLOAT32_TOLERANCE:
            warnings.warn(f"dtype=float32 is not accurate enough for this model: on {X.shape[0]} training rows "
                          f"its ELBO is {single / self.num_data:.6g} per datum against {double / self.num_data:.6g} "
                          f"in float64 (m={self.num_inducing}); use dtype=np.float64", Float32Warning, stacklevel=3)

    # --- predictions ---------------------------------------------------------------------------
    def _new_inputs(self, Xnew):
        Xnew = as_matrix(Xnew, "Xnew", d=self.input_dim)
        self._check_inputs(Xnew, "Xnew")
        return Xnew

    @lazy_on_dask(outputs=2)
    def predict_f(self, Xnew, full_cov: bool = False, full_output_cov: bool = False):
        """Predictive mean and variance of f (docs/math.md sections 7.9 and 11.1): [n*] each with
        one latent GP; [n*, L] with several, or [n*, P] of g = W f with coregionalisation.
        ``full_cov`` gives each latent GP's covariance over Xnew ([n*, n*], or [L, n*, n*]);
        ``full_output_cov`` (coregionalisation) the covariance of the P outputs at each point
        [n*, P, P]."""
        return self._predict_f(self._new_inputs(Xnew), full_cov, full_output_cov)

    def _predict_f(self, Xnew, full_cov: bool = False, full_output_cov: bool = False):
        if full_cov and full_output_cov:
            raise ValueError("full_cov and full_output_cov cannot both be set")
        if full_output_cov and self._mixing is None:
            raise ValueError("full_output_cov needs a LinearCoregionalization kernel (independent latent GPs have "
                             "no covariance between outputs)")
        if full_cov and self._mixing is not None:
            raise ValueError("full_cov is the latent GPs' covariance; with LinearCoregionalization sample with "
                             "predict_f_samples or use full_output_cov")
        args = self._args()
        if full_cov:
            pairs = [_core.sparse.svgp_predict_cov(args, l, Xnew) for l in range(self.num_latent_gps)]
            mean = np.stack([p[0] for p in pairs], axis=1)  # [n*, L]
            cov = np.stack([p[1] for p in pairs])            # [L, n*, n*]
            return (mean[:, 0], cov[0]) if self._single else (mean, cov)
        mean, var = _core.sparse.svgp_predict(args, Xnew)  # [n*, L] each
        np.maximum(var, 0.0, out=var)  # rounding can make a near-zero variance negative
        if self._mixing is not None:
            W = self._mixing.W  # [P, L]
            if full_output_cov:
                return mean @ W.T, np.einsum("pl,nl,ql->npq", W, var, W)
            return mean @ W.T, var @ (W ** 2).T
        return (mean[:, 0], var[:, 0]) if self._single else (mean, var)

    def _predict_outputs(self, Xnew):
        """The likelihood's inputs at validated Xnew: means and variances [n*, outputs]."""
        mean, var = self._predict_f(Xnew)
        return (mean[:, None], var[:, None]) if self._single else (mean, var)

    @lazy_on_dask(outputs=2)
    def predict_y(self, Xnew):
        """Predictive mean and variance of y*: [n*] with one output; [n*, P] for P outputs;
        class probabilities [n*, K] (and p (1 - p)) for multi-class likelihoods; for Bernoulli
        p(y* = 1), for Poisson the rate's mean."""
        mean, var = self._predict_outputs(self._new_inputs(Xnew))
        core = self.likelihood.latent_core(self.num_outputs)
        ymean, yvar = core.predict_mean_and_var(self.likelihood.theta(), mean, var)
        return (ymean[:, 0], yvar[:, 0]) if self._single else (ymean, yvar)

    @lazy_on_dask(outputs=1)
    def predict_log_density(self, Xnew, ynew) -> np.ndarray:
        """log p(y* | data) for each test point [n*] (summed over the outputs of a row)."""
        Xnew = self._new_inputs(Xnew)
        ynew = self._targets(ynew, "ynew", Xnew.shape[0])
        mean, var = self._predict_outputs(Xnew)
        core = self.likelihood.latent_core(self.num_outputs)
        return core.predict_log_density(self.likelihood.theta(), ynew, mean, var)

    def predict_f_samples(self, Xnew, num_samples: int = 1, seed=None) -> np.ndarray:
        """Joint samples of f at Xnew: [num_samples, n*] with one latent GP, [num_samples, n*, L]
        with several, [num_samples, n*, P] of g = W f with coregionalisation."""
        num_samples = as_positive_int(num_samples, "num_samples")
        Xnew = self._new_inputs(Xnew)
        args = self._args()
        L = self.num_latent_gps
        rngs = [seed] if L == 1 else np.random.default_rng(seed).integers(2 ** 63, size=L)
        samples = np.stack([sample_joint(*_core.sparse.svgp_predict_cov(args, l, Xnew), num_samples, rng)
                            for l, rng in enumerate(rngs)], axis=-1)  # [S, n*, L]
        if self._mixing is not None:
            return samples @ self._mixing.W.T
        return samples[..., 0] if self._single else samples

    # --- saving (varinf.serialization) ------------------------------------------------------------
    def _save_state(self):
        """config ``{"kernel": spec, "likelihood": spec, "num_data", "num_latent_gps", "whiten",
        "q_diag", "train_Z", "has_mean", "trainable": {"mean", "q_mu", "q_sqrt"}, "num_inducing",
        "inducing", "dtype"}`` (``num_inducing`` is null once Z is placed, the number m before; ``inducing``
        how Z will be placed; ``dtype`` "float64" or "float32"; ``inducing``, ``num_latent_gps`` and
        ``dtype`` are absent in files of older varinf, which mean "kmeans", 1 and "float64"); arrays: the kernel's under ``kernel/``, the
        likelihood's under ``likelihood/``, ``elbo_history`` [steps], ``mean`` (if any: a scalar,
        or [L]) and, once Z is placed, ``Z``, ``q_mu`` and ``q_sqrt`` in the shapes of the
        properties of the same names."""
        kernel, arrays = dump_component(self.kernel, "kernel/")
        likelihood, likelihood_arrays = dump_component(self.likelihood, "likelihood/")
        arrays.update(likelihood_arrays, elbo_history=self.elbo_history_)
        trainable, values = save_parameters(self._own_parameters())
        arrays.update(values)
        config = {"kernel": kernel, "likelihood": likelihood, "num_data": self.num_data,
                  "num_latent_gps": self.num_latent_gps, "whiten": self.whiten, "q_diag": self.q_diag,
                  "train_Z": self._train_Z if self._Z is None else self._Z.trainable,
                  "has_mean": self._mean is not None, "trainable": trainable, "num_inducing": None,
                  "inducing": self.inducing, "dtype": np.dtype(self.dtype).name}
        if self._Z is None:
            config["num_inducing"] = self._num_inducing
        else:
            arrays.update(Z=self.Z, q_mu=self.q_mu, q_sqrt=self.q_sqrt)
            trainable.update(q_mu=self._q_mu.trainable, q_sqrt=self._q_sqrt.trainable)
        return config, arrays

    @classmethod
    def _from_state(cls, config, arrays):
        kernel = load_component(config_value(config, "kernel", dict), arrays, "kernel/")
        if not isinstance(kernel, (Kernel, _LatentKernels)):
            raise FormatError(f"kernel must be a Kernel, SeparateIndependent or LinearCoregionalization, "
                              f"got {type(kernel).__name__}")
        likelihood = load_component(config_value(config, "likelihood", dict), arrays, "likelihood/", Likelihood)
        q_diag = config_value(config, "q_diag", bool)
        L = config_number(config, "num_latent_gps", int, minimum=1) if "num_latent_gps" in config else 1
        mean = None
        if config_value(config, "has_mean", bool):
            mean = arrays.take("mean", () if L == 1 else (L,))
        try:
            model = cls(kernel, likelihood, config_number(config, "num_inducing", int, minimum=1)
                        if config.get("num_inducing") is not None else 1,
                        config_number(config, "num_data", int, minimum=1), num_latent_gps=L,
                        whiten=config_value(config, "whiten", bool), q_diag=q_diag,
                        mean=None if mean is None else 0.0, train_Z=config_value(config, "train_Z", bool),
                        inducing=_saved_method(config), dtype=_saved_dtype(config))
        except ValueError as err:
            raise FormatError(f"inconsistent SVGP: {err}") from None
        if mean is not None:
            model._mean.value = mean
        params = model._own_parameters()
        if config.get("num_inducing") is None:  # fitted: every shape is checked before any data are read
            Z = arrays.take("Z")
            if Z.ndim not in (2, 3) or (Z.ndim == 3 and Z.shape[0] != L):
                raise FormatError(f"Z must be [m, d] or [{L}, m, d], got {Z.shape}")
            m = Z.shape[-2]
            single = model._single
            q_mu = arrays.take("q_mu", (m,) if single else (m, L))
            q_sqrt_shape = ((m,) if q_diag else (m, m)) if single else ((m, L) if q_diag else (L, m, m))
            q_sqrt = arrays.take("q_sqrt", q_sqrt_shape)
            try:
                model._set_inducing(Z.copy())
            except ValueError as err:
                raise FormatError(f"inconsistent SVGP: {err}") from None
            model.q_mu, model.q_sqrt = q_mu, q_sqrt
            params += [model._q_mu, model._q_sqrt]
        restore_trainable(params, config_value(config, "trainable", dict))
        model.elbo_history_ = arrays.take("elbo_history", (None,)).copy()
        return model


def _precision(dtype) -> type:
    """np.float64 or np.float32, from any spelling numpy accepts."""
    try:
        kind = np.dtype(dtype).type
    except TypeError:
        kind = None
    if kind not in (np.float64, np.float32):
        raise ValueError(f"dtype must be np.float64 or np.float32, got {dtype!r}")
    return kind


def _saved_dtype(config) -> str:
    """The file's dtype: "float64" in files of older varinf."""
    return config_value(config, "dtype", str) if "dtype" in config else "float64"


def _num_latent(kernel, likelihood, num_latent_gps) -> int:
    """L, checked against what the kernel and the likelihood imply."""
    implied = {}
    if isinstance(kernel, _LatentKernels):
        implied["the kernel"] = kernel.num_latent_gps
    elif likelihood.latent_dim is not None:
        implied["the likelihood"] = likelihood.latent_dim
    if num_latent_gps is not None:
        implied["num_latent_gps"] = as_positive_int(num_latent_gps, "num_latent_gps")
    values = set(implied.values())
    if len(values) > 1:
        raise ValueError("num_latent_gps is inconsistent: " + ", ".join(f"{k} gives {v}" for k, v in implied.items()))
    return values.pop() if values else 1


def _latent_mean(mean, L: int):
    """The mean Parameter (one constant per latent GP), or None (zero mean)."""
    param = make_mean(mean, np.zeros(1))  # "constant" starts at 0
    if param is None or L == 1:
        return param
    return Parameter("mean", np.full(L, float(param.value)), lower=None)


def _inducing_array(Z, L: int) -> np.ndarray:
    """Z as [m, d] (shared) or [L, m, d] (one set per latent GP)."""
    if np.ndim(Z) != 3:
        return as_matrix(Z, "Z")
    arr = _as_float_array(Z, "Z")
    if arr.shape[0] != L or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"Z must be [m, d] or [num_latent_gps = {L}, m, d], got {arr.shape}")
    return arr


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
