"""Sparse GP regression with the collapsed variational bound of Titsias (2009) and FITC
(Snelson & Ghahramani 2006); docs/math.md sections 5 and 6."""

from __future__ import annotations

import copy

import numpy as np

from .._constants import KUU_JITTER
from .._loader import core as _core
from .._validation import as_choice, as_matrix, as_positive_int, is_integer
from ..inducing import KMEANS_SAMPLE, METHODS, inducing_points, place_inducing, warn_kuu_jitter
from ..kernels import Kernel, LinearCoregionalization
from ..parameters import Parameter, distinct
from ..serialization import FormatError, config_value, load_component, register, restore_trainable
from ._regression import GaussianRegression, sample_joint

# inducing_points and KUU_JITTER are read here too (vi.models.sgpr.inducing_points; tests patch
# KUU_JITTER in this module).
__all__ = ["SGPR", "FITC", "inducing_points", "KUU_JITTER"]


class _SparseRegression(GaussianRegression):
    """What SGPR and FITC share: inducing inputs Z, the blocked C++ objective with its gradient,
    L-BFGS-B, and the predictions (the same formulas with each model's factors).

    Parameters: see SGPR.
    """

    _core_objective = None  # set by subclasses: the C++ objective with its gradient
    _core_predict = staticmethod(_core.sparse.sgpr_predict)  # docs/math.md sections 5.6 and 6.4
    _objective_field = "bound"

    _mixing = None  # SGPR's LinearCoregionalization kernel, if it has one

    def __init__(self, X, y, kernel: Kernel, Z, noise_variance: float = 1.0, mean=None,
                 train_Z: bool = True, inducing: str = "kmeans"):
        inducing = as_choice(inducing, "inducing", METHODS)
        self._init_data(X, y, kernel, noise_variance, mean)
        if is_integer(Z):  # dask rows: placed among a sample of them
            sample = self.X if self._partitioned is None else self._partitioned.sample(KMEANS_SAMPLE, seed=0)
            Z = place_inducing(sample, Z, 0, inducing, kernel if self._mixing is None else kernel.kernels[0])
        Z = as_matrix(Z, "Z", d=self.X.shape[1])  # [m, d]
        self._Z = Parameter("Z", Z.ravel(), lower=None, trainable=train_Z)
        self._Z_shape = Z.shape

    # --- parameters ------------------------------------------------------------------------
    @property
    def Z(self) -> np.ndarray:
        """The inducing inputs [m, d] (a copy; assign to change them)."""
        return self._Z.value.reshape(self._Z_shape).copy()

    @Z.setter
    def Z(self, value):
        value = as_matrix(value, "Z", d=self.X.shape[1])
        if value.shape != self._Z_shape:
            raise ValueError(f"Z must keep its shape {self._Z_shape}, got {value.shape}")
        self._Z.value = value.ravel()

    @property
    def parameters(self) -> list:
        """Every parameter, in gradient order: kernel (for a LinearCoregionalization the latent
        GPs' kernels, then W), noise variance, mean (if any), Z."""
        return distinct(self._value_parameters())

    def _value_parameters(self) -> list:
        kernel = self.kernel.parameters if self._mixing is None else self._mixing.value_parameters()
        return kernel + self._own_parameters() + [self._Z]

    def _sizes(self) -> str:
        n = self._n if self._detached else self.X.shape[0]
        return f"n={n}, m={self._Z_shape[0]}, d={self.X.shape[1]}"

    # --- saving (varinf.serialization; the layout: GaussianRegression._save_state) -----------------
    def _save_state(self):
        config, arrays = super()._save_state()
        config["train_Z"] = self._Z.trainable
        arrays["Z"] = self.Z
        return config, arrays

    def _saved_data(self) -> dict:
        """The data in memory (``X`` [n, d], ``y`` [n]); for a model on dask arrays or a detached
        copy, the posterior's factor instead: ``factor/L`` [m, m], ``factor/LB`` [m, m],
        ``factor/c`` [m], ``factor/values`` (the objective, the jitter), ``factor/n`` and, for SGPR,
        ``factor/upper_bound``."""
        if self._partitioned is None and not self._detached:
            return super()._saved_data()
        L, LB, c, bound, upper, jitter = self._posterior().__getstate__()  # c [m, P]
        c = c[:, 0] if self._single else c
        n = self._n if self._detached else self.X.shape[0]
        saved = {"factor/L": L, "factor/LB": LB, "factor/c": c, "factor/values": np.array([bound, jitter]),
                 "factor/n": np.array(n, dtype=np.int64)}
        if np.isfinite(upper):
            saved["factor/upper_bound"] = np.array(upper)
        return saved

    @classmethod
    def _from_state(cls, config, arrays):
        if "factor/L" not in arrays.names("factor/"):
            return super()._from_state(config, arrays)
        kernel = load_component(config_value(config, "kernel", dict), arrays, "kernel/", Kernel)
        m, d = arrays.shape("Z", (None, None))
        outputs = cls._saved_outputs(arrays, "factor/c", m)
        factor = _saved_factor(arrays, m, outputs)
        n = int(arrays.take("factor/n", (), dtype=np.int64))
        if n < 1:
            raise FormatError(f"factor/n must be a positive number of rows, got {n}")
        inducing = cls._saved_inducing(config, arrays, d)
        model = cls(np.zeros((1, d)), np.zeros((1, *outputs)), kernel, **inducing,
                    noise_variance=arrays.take("noise_variance", ()), mean=cls._saved_mean(config, arrays, outputs))
        restore_trainable(model._own_parameters(), config_value(config, "trainable", dict))
        model._detach(factor, n)
        return model

    @classmethod
    def _saved_inducing(cls, config, arrays, d):
        return {"Z": arrays.take("Z", (None, d)), "train_Z": config_value(config, "train_Z", bool)}

    # --- objective ---------------------------------------------------------------------------
    def _args(self):
        return (self.kernel.core(), self.kernel.theta(), *self._rows(), self.Z,
                self.noise_variance, self._means(), KUU_JITTER)

    def _shared(self) -> tuple:
        """The parameters that the passes over dask chunks send to the workers."""
        return self.kernel, self.kernel.theta(), self.Z, self.noise_variance, self._means(), KUU_JITTER

    def _means(self) -> np.ndarray:
        """The prior mean of each output [P] (zeros for a zero mean)."""
        return np.array(np.broadcast_to(self.mean, (self.num_outputs,)), dtype=np.float64)

    def _objective_and_value_grad(self):
        self._require_data()
        bound, dkernel, dZ, dnoise, dmean, jitter = self._bound_grad()
        self._warn_jitter(jitter)
        grads = [dkernel, [dnoise]] + ([dmean] if self._mean is not None else []) + [dZ.ravel()]  # dmean [P]
        return bound, np.concatenate(grads)

    def _bound_grad(self) -> tuple:
        """(objective, d/d the kernel's values, d/dZ [m, d], d/dnoise, d/dmean [P], jitter)."""
        if self._partitioned is None:
            return self._core_objective(*self._args())
        return self._passes().bound_grad(self._partitioned, self._shared())

    # --- data as dask arrays, and copies without data (varinf.dask; docs/math.md section 10) ----
    _partitioned = None  # the dask rows (varinf.dask._partitioned.PartitionedRows), if any
    _detached = False  # True for a copy without training data: it predicts from its factor

    def _init_partitioned(self, X, y):
        """Dask arrays X [n, d] and y [n] (or [n, P] for SGPR) stay where they are (dask arrays are
        immutable, so the model owns them as they are); the objective runs over their chunks."""
        if self._mixing is not None:
            raise ValueError("an SGPR with a LinearCoregionalization kernel needs X and y in memory (numpy): its "
                             "statistics over dask chunks are not built; on dask arrays use one kernel shared by "
                             "the outputs, or vi.SVGP with the LinearCoregionalization")
        from ..dask._partitioned import PartitionedRows, as_row_chunks
        self.X, self.y = as_row_chunks(X, y, columns=self._SEVERAL_OUTPUTS)  # [n, d], [n] or [n, P]
        self._partitioned = PartitionedRows(self.X, self.y)

    def _passes(self):
        from ..dask._partitioned import PASSES
        return PASSES[self._partitioned_passes]

    def _rows(self) -> tuple:
        """X [n, d] and y [n] (or [n, P]) for the C++ calls: the data in memory, or no rows when
        they are dask arrays (the passes over the chunks read them) or gone (a detached copy)."""
        if self._partitioned is None and not self._detached:
            return self.X, self.y
        return np.zeros((0, self._Z_shape[1])), np.zeros((0,) if self._single else (0, self.num_outputs))

    def _compute_factor(self):
        if self._partitioned is None:
            return super()._compute_factor()
        return self._passes().factor(self._partitioned, self._shared())

    def _require_data(self):
        if self._detached:
            raise ValueError(f"this {type(self).__name__} holds no training data (a copy that predicts from its "
                             "posterior); build the model on the data to evaluate or fit it")

    def _without_data(self):
        """A copy that predicts from the posterior's factor alone, without the training data:
        what goes to Dask workers for lazy predictions, and what is saved for a model on dask
        arrays. Its ``fit`` and objective gradient raise."""
        twin = copy.copy(self)
        twin._detach(self._posterior(), self.X.shape[0] if not self._detached else self._n)
        return twin

    def _detach(self, factor, n: int):
        self._factor, self._factor_key = factor, self._factor_depends_on()
        self._caches = ()  # pickled with its factor
        self.X, self.y = self._rows()
        self._partitioned, self._detached, self._n = None, True, n

    def _predictor(self):
        """What computes predictions on Dask workers (sent to each worker once)."""
        return self if self._partitioned is None else self._without_data()

    def _warn_jitter(self, jitter):
        warn_kuu_jitter(jitter, KUU_JITTER, stacklevel=3)

    def _predict_f(self, Xnew, full_cov: bool = False):
        """Means [n*] and variances [n*] (or covariance [n*, n*]); for P outputs, means [n*, P]
        and variances [n*, P] (or covariances [P, n*, n*]), the same for every output."""
        mean, var = super()._predict_f(Xnew, full_cov)  # [n*, P]; the outputs' [n*] or [n*, n*]
        if self._single:
            return mean[:, 0], var
        P = self.num_outputs
        return mean, np.repeat(var[None], P, axis=0) if full_cov else np.repeat(var[:, None], P, axis=1)

    def compute_qu(self):
        """The posterior of u = f(Z) given the data, N(mean [m], cov [m, m]) (for SGPR the
        optimal q(u), Titsias 2009 eq. 10; docs/math.md section 5.5); for P outputs the means
        are [m, P] and the covariance is the same for every output."""
        mean, cov = _core.sparse.sgpr_qu(*self._args(), self._posterior())  # [m, P], [m, m]
        return (mean[:, 0] if self._single else mean), cov


def _saved_factor(arrays, m: int, outputs: tuple):
    """The SGPRFactor of a saved detached model, checked: triangular factors with a positive
    diagonal and finite entries (anything else raises FormatError); c is [m] or [m, P]."""
    L, LB = arrays.take("factor/L", (m, m)), arrays.take("factor/LB", (m, m))
    c, (bound, jitter) = arrays.take("factor/c", (m, *outputs)), arrays.take("factor/values", (2,))
    upper = float(arrays.take("factor/upper_bound", ())) if "factor/upper_bound" in arrays.names("factor/") else np.nan
    for name, T in (("factor/L", L), ("factor/LB", LB)):
        if not (np.all(np.isfinite(T)) and np.all(np.triu(T, 1) == 0) and np.all(np.diag(T) > 0)):
            raise FormatError(f"{name} must be lower triangular with a positive diagonal and finite entries")
    if not np.all(np.isfinite(c)) or not np.isfinite(bound) or not jitter >= 0:
        raise FormatError("factor/c and the saved objective must be finite, and the jitter non-negative")
    factor = _core.sparse.SGPRFactor.__new__(_core.sparse.SGPRFactor)
    factor.__setstate__((L, LB, c, float(bound), upper, float(jitter)))
    return factor


@register
class SGPR(_SparseRegression):
    """Sparse GP regression with the collapsed bound of Titsias (2009): m inducing inputs Z
    summarise the data.

    Parameters
    ----------
    X, y, kernel : as for varinf.GPR (X [n, d] and y are copied; the model keeps read-only copies).
        y may be [n, P]: P outputs that share the kernel, Z and the noise variance, each with its
        own mean, as GPflow's SGPR with several columns of Y (docs/math.md section 5.9). The bound
        is the sum of the outputs' bounds; predictions are [n*, P], with one variance for all.
        With ``kernel=varinf.kernels.LinearCoregionalization([k_1, ..., k_Q], W)`` the P outputs
        instead mix Q latent GPs, y = W g + mean + noise with W [P, Q] learned (linear
        coregionalisation; docs/math.md section 5.10): the bound uses the joint optimal q(u) of the
        latent GPs (cost n (mQ)^2 per evaluation), predictions carry the outputs' correlations,
        and the data must be in memory.
    Z : array_like [m, d], the inducing inputs (learned by ``fit`` unless ``train_Z=False``),
        or an int m: placed among the rows of X by ``inducing``
    noise_variance, mean : as for varinf.GPR (mean: one number per output is accepted too)
    train_Z : bool, whether ``fit`` moves the inducing inputs
    inducing : for an int Z, ``"kmeans"`` (k-means centres) or ``"greedy-variance"`` (the rows of
        greatest conditional variance under the initial kernel, Burt et al. 2020; varinf.inducing;
        for a LinearCoregionalization, under its first latent GP's kernel)

    The C++ core evaluates the objective and its gradient with respect to Z, the kernel
    parameters, the noise and the mean in one call, in blocks of data rows (memory
    O(m^2 + block m), never n x n); ``fit`` maximises it with L-BFGS-B.
    """

    _core_objective = staticmethod(_core.sparse.sgpr_bound_grad)
    _core_factor = staticmethod(_core.sparse.sgpr_factor)
    _partitioned_passes = "sgpr"
    _label = "SGPR bound"
    _SEVERAL_OUTPUTS = True
    _KERNEL_TYPES = (Kernel, LinearCoregionalization)

    def _init_data(self, X, y, kernel, noise_variance, mean):
        self._mixing = kernel if isinstance(kernel, LinearCoregionalization) else None
        super()._init_data(X, y, kernel, noise_variance, mean)
        if self._mixing is not None and self.num_outputs != kernel.num_outputs:
            raise ValueError(f"y must have one column per row of the LinearCoregionalization's W "
                             f"({kernel.num_outputs}), got {self.num_outputs}")

    # --- coregionalised outputs (docs/math.md section 5.10) ------------------------------------
    def _args(self):
        if self._mixing is None:
            return super()._args()
        X, y = self._rows()
        kernels = self._mixing.kernels
        return ([k.core() for k in kernels], [k.theta() for k in kernels], X, y.reshape(len(y), -1), self.Z,
                self._mixing.W, self.noise_variance, self._means(), KUU_JITTER)

    def _compute_factor(self):
        if self._mixing is None:
            return super()._compute_factor()
        return _core.sparse.lmc_factor(*self._args())

    def _bound_grad(self) -> tuple:
        if self._mixing is None:
            return super()._bound_grad()
        bound, dthetas, dZ, dW, *rest = _core.sparse.lmc_bound_grad(*self._args())
        return (bound, np.concatenate([*dthetas, dW.ravel()]), dZ, *rest)

    def _latent_moments(self, Xnew, full_cov: bool) -> tuple:
        """The latent GPs' means [n*, Q] and covariances: per point [n*, Q, Q], or joint
        [Q n*, Q n*] (index q n* + i) with ``full_cov``."""
        mean, cov = _core.sparse.lmc_predict(*self._args(), self._posterior(), Xnew, bool(full_cov))
        Q = mean.shape[1]
        return mean, (cov if full_cov else cov.reshape(-1, Q, Q))

    def _predict_f(self, Xnew, full_cov: bool = False):
        if self._mixing is None:
            return super()._predict_f(Xnew, full_cov)
        mean_g, cov_g = self._latent_moments(Xnew, full_cov)  # [n*, Q]; [n*, Q, Q] or [Q n*, Q n*]
        W = self._mixing.W  # [P, Q]
        mean = mean_g @ W.T + self._means()  # [n*, P]
        if full_cov:
            ns, Q = mean_g.shape
            var = np.einsum("pq,qirj,pr->pij", W, cov_g.reshape(Q, ns, Q, ns), W, optimize=True)  # [P, n*, n*]
        else:
            var = np.maximum(np.einsum("pq,iqr,pr->ip", W, cov_g, W, optimize=True), 0.0)  # [n*, P]
        if self._single:
            return mean[:, 0], var[0] if full_cov else var[:, 0]
        return mean, var

    def predict_f_samples(self, Xnew, num_samples: int = 1, seed=None) -> np.ndarray:
        """Joint samples of the latent function at Xnew: [num_samples, n*], or
        [num_samples, n*, P] for P outputs. With a LinearCoregionalization kernel the outputs are
        drawn jointly (they are correlated); otherwise independently from their one covariance."""
        if self._mixing is None:
            return super().predict_f_samples(Xnew, num_samples, seed)
        num_samples = as_positive_int(num_samples, "num_samples")
        mean_g, cov_g = self._latent_moments(self._new_inputs(Xnew), True)  # [n*, Q], [Q n*, Q n*]
        g = sample_joint(mean_g.T.ravel(), cov_g, num_samples, seed)  # [S, Q n*]
        f = np.einsum("sqi,pq->sip", g.reshape(num_samples, mean_g.shape[1], -1), self._mixing.W) + self._means()
        return f[..., 0] if self._single else f  # [S, n*] or [S, n*, P]

    def compute_qu(self):
        """The optimal q(u) of u = f(Z) (Titsias 2009 eq. 10; docs/math.md section 5.5): means [m]
        (or [m, P]) and the covariance [m, m] shared by the outputs. With a
        LinearCoregionalization kernel, the joint q(u) of the Q latent GPs' u_q = g_q(Z): means
        [m, Q] and covariance [mQ, mQ] of the stacked [u_1; ...; u_Q] (section 5.10)."""
        if self._mixing is None:
            return super().compute_qu()
        return _core.sparse.lmc_qu(*self._args(), self._posterior())

    def upper_bound(self) -> float:
        """Titsias (2014) upper bound on the log marginal likelihood: elbo() <= log p(y) <=
        upper_bound(), so the gap shows how good the inducing inputs are (docs/math.md
        section 5.4)."""
        return float(self._posterior().upper_bound)

    def elbo(self, return_grad: bool = False):
        """The collapsed evidence lower bound (Titsias 2009, eq. 9; docs/math.md section 5.2); with
        ``return_grad`` also its gradient (section 5.3) with respect to the unconstrained values of
        ``trainable_parameters``."""
        return self._objective(return_grad)


@register
class FITC(_SparseRegression):
    """The FITC approximation (Snelson & Ghahramani 2006; docs/math.md section 6.1):
    y ~ N(mean, Qff + Lambda) with Qff = Kfu Kuu^-1 Kuf [n, n] and the diagonal
    Lambda = diag(Kff - Qff) + noise_variance [n].
    Parameters as for SGPR; ``fit`` maximises the FITC log marginal likelihood.
    """

    _core_objective = staticmethod(_core.sparse.fitc_lml_grad)
    _core_factor = staticmethod(_core.sparse.fitc_factor)
    _partitioned_passes = "fitc"
    _label = "FITC log marginal likelihood"

    def log_marginal_likelihood(self, return_grad: bool = False):
        """log N(y; mean, Qff + Lambda) (Snelson & Ghahramani 2006; docs/math.md section 6.2); with
        ``return_grad`` also its gradient (section 6.3) with respect to the unconstrained values of
        ``trainable_parameters``."""
        return self._objective(return_grad)
