"""What GP regression models with Gaussian noise share (GPR, SGPR, FITC): the data, the
noise-variance and mean parameters, the cached C++ factorisation, L-BFGS-B, the predictions,
saving and loading."""

from __future__ import annotations

import numpy as np

from .._constants import NOISE_LOWER
from .._errors import LinAlgError
from .._validation import as_matrix, as_positive_int, as_targets, as_vector, is_dask, owned
from ..kernels import Kernel
from ..linalg import cholesky
from ..optimize import maximize
from ..parameters import Parameter, ParameterVector
from ..serialization import FormatError, config_value, dump_component, load_component, restore_trainable, save_parameters
from ._common import ConstantMean, Persistent, gaussian_log_density, lazy_on_dask, make_mean

__all__ = ["GaussianRegression", "sample_joint"]


def sample_joint(mean, cov, num_samples, seed) -> np.ndarray:
    """Joint samples [num_samples, n*] of N(mean [n*], cov [n*, n*]) (docs/math.md section 4.3)."""
    if not np.all(np.isfinite(cov)):
        raise LinAlgError("Cholesky of the predictive covariance failed: it is not finite at Xnew "
                          "(the kernel overflows there); rescale the inputs")
    L = cholesky(cov, jitter=1e-10 * max(1.0, float(np.mean(np.diag(cov)))),
                 name="the predictive covariance")  # [n*, n*]
    eps = np.random.default_rng(seed).standard_normal((num_samples, mean.size))  # [num_samples, n*]
    return mean + eps @ L.T  # [num_samples, n*]


class GaussianRegression(ConstantMean, Persistent):
    """Base of the Gaussian-noise regression models. Subclasses define ``parameters``,
    ``_args()`` (the C++ functions' leading arguments), ``_objective_and_value_grad()`` and the
    class attributes below."""

    _caches = ("_factor", "_factor_key")  # the C++ factorisation, recomputed when needed

    # Set by subclasses: the C++ factorisation and prediction, the factorisation's objective field
    # and the objective's name.
    _core_factor = _core_predict = None
    _objective_field = ""
    _label = ""
    # The passes over dask arrays' chunks (varinf.dask._partitioned.PASSES), for models whose
    # objective is a sum over data points; None: the data must be in memory.
    _partitioned_passes = None
    # Whether y may be [n, P]: P outputs sharing the kernel and the noise (docs/math.md section 5.9).
    _SEVERAL_OUTPUTS = False
    # What the kernel argument may be.
    _KERNEL_TYPES: tuple = (Kernel,)

    def _init_data(self, X, y, kernel, noise_variance, mean):
        if not isinstance(kernel, self._KERNEL_TYPES):
            raise ValueError(f"kernel must be a {' or '.join(t.__name__ for t in self._KERNEL_TYPES)}, "
                             f"got {type(kernel).__name__}")
        if is_dask(X) or is_dask(y):
            self._init_partitioned(X, y)
        else:
            # The model owns read-only copies: editing the caller's arrays later changes nothing.
            self.X = owned(as_matrix(X, "X", copy=True))  # [n, d]
            self.y = owned(self._targets(y, "y", self.X.shape[0], copy=True))  # [n] or [n, P]
        self.num_outputs = 1 if self.y.ndim == 1 else self.y.shape[1]
        kernel.check_input(self.X, "X")
        self.kernel = kernel
        self._noise = Parameter("noise_variance", noise_variance, lower=NOISE_LOWER)
        if self._noise.size != 1:
            raise ValueError("noise_variance must be a scalar")
        self._mean = make_mean(mean, self.y)
        self._factor = None
        self._factor_key = None

    def _init_partitioned(self, X, y):
        """Training data given as dask arrays (varinf.dask): only models whose objective is a
        sum over data points take them."""
        raise ValueError(f"{type(self).__name__} needs X and y in memory (numpy); for dask arrays use vi.SGPR "
                         "or vi.FITC")

    def _targets(self, y, name: str, n: int, outputs: int | None = None, copy: bool = False) -> np.ndarray:
        """y checked: [n], or [n, P] where several outputs are supported (P = ``outputs`` when
        given)."""
        if not self._SEVERAL_OUTPUTS:
            return as_vector(y, name, n=n, copy=copy)
        y = as_targets(y, name, n=n, copy=copy)
        if outputs is not None and (1 if y.ndim == 1 else y.shape[1]) != outputs:
            raise ValueError(f"{name} must have the model's {outputs} output column(s), got shape {y.shape}")
        return y

    @property
    def _single(self) -> bool:
        """One output: y [n], predictions [n*]."""
        return self.num_outputs == 1

    def _require_data(self):
        """Raise when the model holds no training data (a copy that only predicts)."""

    def _compute_factor(self):
        """The C++ factorisation at the current parameters."""
        return self._core_factor(*self._args())

    # --- parameters ------------------------------------------------------------------------
    noise_variance = property(lambda self: float(self._noise.value),
                              lambda self, v: setattr(self._noise, "value", v))

    @property
    def input_dim(self) -> int:
        """The number of input columns d."""
        return self.X.shape[1]

    @property
    def trainable_parameters(self) -> list:
        return ParameterVector(self.parameters).unique

    def _value_parameters(self) -> list:
        """The parameters in the order of the objective's gradient, a shared one once per place it
        is read (``parameters`` lists each once)."""
        return self.parameters

    def _own_parameters(self) -> list:
        return [self._noise] + super()._own_parameters()

    def _new_inputs(self, Xnew):
        return as_matrix(Xnew, "Xnew", d=self.X.shape[1])

    def _sizes(self) -> str:
        return f"n={self.X.shape[0]}, d={self.X.shape[1]}"

    def __repr__(self):
        mean = f", mean={np.array2string(np.asarray(self.mean), precision=4)}" if self._mean is not None else ""
        return (f"{type(self).__name__}({self._sizes()}, kernel={self.kernel!r}, "
                f"noise_variance={self.noise_variance:.4g}{mean})")

    # --- objective ---------------------------------------------------------------------------
    def _factor_depends_on(self) -> tuple:
        """The parameter values the factorisation is computed from."""
        return tuple(p.value.tobytes() for p in self.parameters)

    def _posterior(self):
        """The C++ factorisation at the current parameters (recomputed when they change)."""
        key = self._factor_depends_on()
        if self._factor_key != key:
            self._require_data()
            self._factor = self._compute_factor()
            self._factor_key = key
            self._warn_jitter(self._factor.jitter)
        return self._factor

    def _objective(self, return_grad: bool):
        """The objective; with ``return_grad`` also its gradient with respect to the unconstrained
        values of ``trainable_parameters``."""
        if not return_grad:
            return float(getattr(self._posterior(), self._objective_field))
        value, grad_values = self._objective_and_value_grad()
        return value, ParameterVector(self._value_parameters()).chain(grad_values)

    def fit(self, max_iter: int = 1000, progress: bool = False):
        """Maximise the objective over the trainable parameters with L-BFGS-B and the analytic
        gradient (docs/math.md section 2.3)."""
        max_iter = as_positive_int(max_iter, "max_iter")
        self._require_data()
        self.optimizer_result_ = maximize(self._objective_and_value_grad, ParameterVector(self._value_parameters()),
                                          max_iter=max_iter, progress=progress, label=self._label,
                                          per_datum=len(self.y))
        return self

    # --- predictions -------------------------------------------------------------------------------
    @lazy_on_dask(outputs=2)
    def predict_f(self, Xnew, full_cov: bool = False):
        """Latent predictive mean [n*] and variance [n*] (or covariance [n*, n*]); lazy dask
        arrays for a dask Xnew."""
        return self._predict_f(self._new_inputs(Xnew), full_cov)

    def _predict_f(self, Xnew, full_cov: bool = False):
        """predict_f at validated Xnew [n*, d]."""
        mean, var = self._core_predict(*self._args(), self._posterior(), Xnew, bool(full_cov))
        if not full_cov:
            np.maximum(var, 0.0, out=var)  # rounding can make a near-zero variance negative
        return mean, var

    @lazy_on_dask(outputs=2)
    def predict_y(self, Xnew, full_cov: bool = False):
        """Predictive mean and variance of noisy observations y* (docs/math.md section 4.3)."""
        return self._predict_y(self._new_inputs(Xnew), full_cov)

    def _predict_y(self, Xnew, full_cov: bool = False):
        mean, var = self._predict_f(Xnew, full_cov)
        if full_cov:
            diagonal = np.arange(var.shape[-1])
            var[..., diagonal, diagonal] += self.noise_variance  # [n*, n*] or [P, n*, n*]
        else:
            var += self.noise_variance
        return mean, var

    @lazy_on_dask(outputs=1)
    def predict_log_density(self, Xnew, ynew) -> np.ndarray:
        """log N(y*; mean, var + noise) for each test point [n*] (summed over the outputs of a
        row)."""
        Xnew = self._new_inputs(Xnew)
        ynew = self._targets(ynew, "ynew", Xnew.shape[0], outputs=self.num_outputs)
        mean, var = self._predict_y(Xnew)
        density = gaussian_log_density(ynew, mean, var)  # [n*] or [n*, P]
        return density if density.ndim == 1 else density.sum(axis=1)

    def predict_f_samples(self, Xnew, num_samples: int = 1, seed=None) -> np.ndarray:
        """Joint samples of the latent function at Xnew: [num_samples, n*], or
        [num_samples, n*, P] for P outputs (independent given the data, one covariance)."""
        num_samples = as_positive_int(num_samples, "num_samples")
        mean, cov = self.predict_f(Xnew, full_cov=True)  # [n*] or [n*, P]; [n*, n*] or [P, n*, n*]
        if mean.ndim == 1:
            return sample_joint(mean, cov, num_samples, seed)
        P = mean.shape[1]
        draws = sample_joint(np.zeros(mean.shape[0]), cov[0], num_samples * P, seed)  # [S P, n*]
        return draws.reshape(num_samples, P, -1).transpose(0, 2, 1) + mean

    # --- saving (varinf.serialization) ------------------------------------------------------------
    def _save_state(self):
        """config ``{"kernel": spec, "has_mean", "trainable": {"noise_variance", "mean"}}`` (and
        ``train_Z`` for SGPR and FITC); arrays: the kernel's under ``kernel/``, ``X`` [n, d],
        ``y`` [n], ``noise_variance``, ``mean`` (if any) and ``Z`` [m, d] (SGPR, FITC)."""
        kernel, arrays = dump_component(self.kernel, "kernel/")
        trainable, values = save_parameters(self._own_parameters())
        arrays.update(values, **self._saved_data())
        return {"kernel": kernel, "has_mean": self._mean is not None, "trainable": trainable}, arrays

    @classmethod
    def _from_state(cls, config, arrays):
        kernel = load_component(config_value(config, "kernel", dict), arrays, "kernel/", cls._KERNEL_TYPES)
        n, d = arrays.shape("X", (None, None))  # every shape is checked before any data are read
        outputs = cls._saved_outputs(arrays, "y", n)
        y = arrays.take("y", (n, *outputs))
        inducing = cls._saved_inducing(config, arrays, d)
        X = arrays.take("X")
        model = cls(X, y, kernel, **inducing, noise_variance=arrays.take("noise_variance", ()),
                    mean=cls._saved_mean(config, arrays, outputs))
        restore_trainable(model._own_parameters(), config_value(config, "trainable", dict))
        return model

    def _saved_data(self) -> dict:
        """The arrays that hold the training data: ``X`` [n, d] and ``y`` [n] (or [n, P])."""
        return {"X": self.X, "y": self.y}

    @classmethod
    def _saved_outputs(cls, arrays, name: str, rows: int) -> tuple:
        """() for one output, (P,) for P > 1: read from the shape of the saved array ``name``
        [rows] or [rows, P]."""
        shape = arrays.shape(name)
        if shape[:1] != (rows,) or len(shape) > 2 or len(shape) == 2 and not (cls._SEVERAL_OUTPUTS and shape[1] > 1):
            raise FormatError(f"array {name!r} has shape {shape}, expected ({rows},)"
                              + (f" or ({rows}, P > 1)" if cls._SEVERAL_OUTPUTS else ""))
        return shape[1:]

    @classmethod
    def _saved_inducing(cls, config, arrays, d: int) -> dict:
        """The constructor's arguments for the inducing inputs (none for GPR)."""
        return {}
