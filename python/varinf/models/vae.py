"""Variational auto-encoder with a C++ core (hand-written backprop, Eigen GEMM, OpenMP).

Kingma & Welling (2013), "Auto-Encoding Variational Bayes"; the importance-weighted bound of
Burda, Grosse & Salakhutdinov (2015). Formulas: docs/math.md section 8; the C++ side documents the
layout (varinf/vae.hpp).

    import varinf as vi
    X, _ = vi.datasets.load_digits_binarized()          # [1797, 64] in {0, 1}
    vae = vi.VAE(64, 8, hidden=(128,), seed=0).fit(X, epochs=20)
    vae.elbo(X).mean(), vae.iwae_bound(X[:100], k=1000).mean()
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Optional

import numpy as np

from .._loader import core
from .._validation import (
    as_choice,
    as_finite_float,
    as_float,
    as_positive_int,
    as_real_array,
    as_seed,
    as_sizes,
)
from ..progress import Progress
from ..serialization import FormatError, config_number, config_value, register
from ._common import Persistent

_ACTIVATIONS = ("relu", "tanh", "softplus")
_LIKELIHOODS = ("bernoulli", "gaussian")
_OBJECTIVES = ("elbo", "iwae")


def _param_count(input_dim: int, latent_dim: int, hidden, decoder_hidden, learn_obs_logvar: bool) -> int:
    """Weights and biases of the encoder D -> hidden -> 2J and the decoder J -> decoder_hidden -> D,
    plus the learned log variance [D] (the layout of varinf/vae.hpp, docs/math.md section 8.1), in
    exact integers."""
    def mlp(sizes):
        return sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))

    return (mlp([input_dim, *hidden, 2 * latent_dim]) + mlp([latent_dim, *decoder_hidden, input_dim])
            + (input_dim if learn_obs_logvar else 0))


def _seed_from(seed: Optional[int], *path: int) -> int:
    """A 64-bit seed for the C++ generators, derived from the user's seed and a path (docs/math.md
    section 8.7)."""
    entropy = None if seed is None else int(seed)
    return int(np.random.SeedSequence(entropy, spawn_key=path).generate_state(1, np.uint64)[0])


@register
class VAE(Persistent):
    """A VAE with MLP encoder x -> (mu, logvar) and decoder z -> likelihood parameters.

    Parameters
    ----------
    input_dim, latent_dim : data width D and latent width J (both >= 1).
    hidden : hidden layer sizes of the encoder (an empty tuple gives a linear encoder).
    decoder_hidden : hidden sizes of the decoder; default ``hidden`` reversed.
    activation : "relu", "tanh" or "softplus" for every hidden layer.
    likelihood : "bernoulli" (decoder outputs logits; data in [0, 1]) or "gaussian" (decoder
        outputs means).
    obs_logvar : Gaussian log variance of every pixel, fixed, or the initial value of a learned
        per-pixel log variance when ``learn_obs_logvar`` is true.
    dtype : np.float32 (default, like PyTorch) or np.float64 for every computation.
    seed : None or an integer >= 0; seeds the initial weights (PyTorch's nn.Linear rule,
        U(+-1/sqrt(fan_in))), the training noise and shuffling, and the evaluation noise. None
        draws fresh entropy.

    A network of more than 2**31 parameters is refused (ValueError) before anything is allocated.
    """

    def __init__(self, input_dim: int, latent_dim: int, hidden=(400,), activation: str = "relu",
                 likelihood: str = "bernoulli", dtype=np.float32, seed: Optional[int] = None, *,
                 decoder_hidden=None, obs_logvar: float = 0.0, learn_obs_logvar: bool = False):
        self.input_dim = as_positive_int(input_dim, "input_dim")
        self.latent_dim = as_positive_int(latent_dim, "latent_dim")
        self.hidden = tuple(as_sizes(hidden, "hidden"))
        self.decoder_hidden = (self.hidden[::-1] if decoder_hidden is None
                               else tuple(as_sizes(decoder_hidden, "decoder_hidden")))
        self.activation = as_choice(activation, "activation", _ACTIVATIONS)
        self.likelihood = as_choice(likelihood, "likelihood", _LIKELIHOODS)
        self.obs_logvar = as_finite_float(obs_logvar, "obs_logvar")
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be np.float32 or np.float64, got {dtype!r}")
        self.dtype = dt
        self.learn_obs_logvar = bool(learn_obs_logvar) and likelihood == "gaussian"
        self._check_size()
        seed = as_seed(seed)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
        self.seed = seed
        self._core = self._make_core()
        self._core.initialize(_seed_from(self.seed, 0))
        self._fits = 0
        self.history_: dict = {"loss": [], "val_elbo": []}

    def _check_size(self) -> None:
        """ValueError when the network has more parameters than the C++ core accepts."""
        count = _param_count(self.input_dim, self.latent_dim, self.hidden, self.decoder_hidden,
                             self.learn_obs_logvar)
        limit = core.vae.VaeF32.max_params
        if count > limit:
            raise ValueError(f"input_dim, latent_dim, hidden and decoder_hidden give {count} parameters "
                             f"({count * self.dtype.itemsize / 2**30:.3g} GiB of {self.dtype.name} weights); "
                             f"at most 2**{limit.bit_length() - 1} = {limit} are supported")

    def _make_core(self):
        """The C++ network for this architecture (weights not yet initialised)."""
        cls = core.vae.VaeF32 if self.dtype == np.float32 else core.vae.VaeF64
        return cls(self.input_dim, self.latent_dim, list(self.hidden), list(self.decoder_hidden),
                   self.activation, self.likelihood, self.learn_obs_logvar, self.obs_logvar)

    # Pickling: the C++ network travels as its weights and is rebuilt.
    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k != "_core"}
        return {**state, "_theta": self.theta.copy()}

    def __setstate__(self, state):
        state = dict(state)
        theta = state.pop("_theta")
        self.__dict__.update(state)
        self._core = self._make_core()
        self._core.theta[:] = theta

    def __repr__(self) -> str:
        return (f"VAE(input_dim={self.input_dim}, latent_dim={self.latent_dim}, hidden={self.hidden}, "
                f"decoder_hidden={self.decoder_hidden}, activation={self.activation!r}, "
                f"likelihood={self.likelihood!r}, dtype={self.dtype.name}, seed={self.seed})")

    # ------------------------------------------------------------------ parameters

    @property
    def theta(self) -> np.ndarray:
        """All parameters as one writable flat view [num_params] (the order of ``weights``)."""
        return self._core.theta

    @property
    def weights(self) -> dict:
        """Writable numpy views of every parameter, with PyTorch-style names.

        ``encoder.{l}.weight`` [out, in] and ``encoder.{l}.bias`` [out] per layer (the last
        encoder layer has 2J outputs: mu then logvar), the same for ``decoder.{l}``, and
        ``decoder.obs_logvar`` [D] when the Gaussian variance is learned.
        """
        return self._named(self._core.theta)

    def _named(self, flat: np.ndarray) -> dict:
        """Named views of a flat vector laid out like theta [num_params]."""
        out = {}
        for net, layers in (("encoder", self._core.encoder_layers), ("decoder", self._core.decoder_layers)):
            for idx, (n_in, n_out, w, b) in enumerate(layers):
                out[f"{net}.{idx}.weight"] = flat[w:w + n_in * n_out].reshape(n_out, n_in)
                out[f"{net}.{idx}.bias"] = flat[b:b + n_out]
        off = self._core.obs_logvar_offset
        if off >= 0:
            out["decoder.obs_logvar"] = flat[off:off + self.input_dim]
        return out

    def set_weights(self, values: dict) -> "VAE":
        """Copy arrays into the named parameters (names and shapes as in ``weights``). Every value
        must be finite in the model's dtype; on any bad value nothing is copied."""
        current = self.weights
        checked = {}
        for name, value in values.items():
            if name not in current:
                raise ValueError(f"unknown weight {name!r}; expected one of {sorted(current)}")
            value = np.asarray(value)
            if value.shape != current[name].shape:
                raise ValueError(f"weight {name!r} must have shape {current[name].shape}, got {value.shape}")
            checked[name] = as_real_array(value, f"weight {name!r}", self.dtype)
        for name, value in checked.items():
            current[name][...] = value
        return self

    # ------------------------------------------------------------------ validation

    def _check_X(self, X, name: str = "X") -> np.ndarray:
        """X as a C-contiguous [n, D] array of self.dtype (no copy when it already is one)."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array [n, {self.input_dim}], got {X.ndim} dimensions")
        if X.shape[0] == 0:
            raise ValueError(f"{name} is empty")
        if X.shape[1] != self.input_dim:
            raise ValueError(f"{name} must have {self.input_dim} columns (input_dim), got {X.shape[1]}")
        X = as_real_array(X, name, self.dtype)
        if self.likelihood == "bernoulli" and (X.min() < 0.0 or X.max() > 1.0):
            raise ValueError(f"{name} must lie in [0, 1] for the Bernoulli likelihood")
        return X

    def _check_Z(self, Z) -> np.ndarray:
        Z = np.asarray(Z)
        if Z.ndim != 2 or Z.shape[1] != self.latent_dim:
            raise ValueError(f"Z must be a 2-D array [n, {self.latent_dim}] (latent_dim), got shape {Z.shape}")
        return as_real_array(Z, "Z", self.dtype)

    # ------------------------------------------------------------------ objective

    def loss_and_grad(self, X, eps, k: int = 1, beta: float = 1.0, objective: str = "elbo"):
        """The minibatch loss ``-mean_i L_i`` with the noise given, its gradient and L_i.

        X [B, D]; eps [B, k, J] (or [B k, J], datum-major). Returns (loss, grads, values) with
        grads a dict named like ``weights`` and values [B] the per-datum objective L_i (the
        ELBO with beta-weighted analytic KL, or the IWAE bound; docs/math.md sections 8.2, 8.4
        and 8.5).
        """
        X = self._check_X(X)
        k = as_positive_int(k, "k")
        eps = np.asarray(eps)
        if eps.shape not in ((X.shape[0], k, self.latent_dim), (X.shape[0] * k, self.latent_dim)):
            raise ValueError(f"eps must have shape {(X.shape[0], k, self.latent_dim)}, got {eps.shape}")
        eps = as_real_array(eps.reshape(X.shape[0] * k, self.latent_dim), "eps", self.dtype)  # [B k, J]
        loss, grad, values = self._core.loss_grad(X, eps, k, as_float(beta, "beta"),
                                                  as_choice(objective, "objective", _OBJECTIVES))
        return float(loss), self._named(grad), values

    # ------------------------------------------------------------------ evaluation

    def elbo(self, X, k: int = 1, seed: Optional[int] = None) -> np.ndarray:
        """Per-datum ELBO [n]: analytic KL and a k-sample estimate of E_q log p(x | z)
        (Kingma & Welling 2013, section 2.4; docs/math.md section 8.2)."""
        X = self._check_X(X)
        return self._core.bound(X, as_positive_int(k, "k"), "elbo", self._stream(as_seed(seed), 1))

    def iwae_bound(self, X, k: int = 5000, seed: Optional[int] = None) -> np.ndarray:
        """Per-datum importance-weighted bound IWAE_k [n] (Burda et al. 2015, eq. 8; docs/math.md
        section 8.4)."""
        X = self._check_X(X)
        return self._core.bound(X, as_positive_int(k, "k"), "iwae", self._stream(as_seed(seed), 2))

    def _stream(self, seed: Optional[int], *path: int) -> int:
        """The C++ seed of random stream ``path``: from ``seed``, or the model's seed when None."""
        return _seed_from(self.seed if seed is None else seed, *path)

    def encode(self, X):
        """Mean and log variance of q(z | x), each [n, J]."""
        return self._core.encode(self._check_X(X))

    def decode(self, Z) -> np.ndarray:
        """Decoder means [n, D]: Bernoulli probabilities, or Gaussian means."""
        return self._core.decode(self._check_Z(Z), True)

    def reconstruct(self, X) -> np.ndarray:
        """decode(mean of q(z | x)) [n, D]."""
        mu, _ = self.encode(X)
        return self._core.decode(mu, True)

    def sample(self, n: int, seed: Optional[int] = None, mean: bool = True) -> np.ndarray:
        """n draws from the model [n, D]: decoder means of z ~ N(0, I), or x ~ p(x | z)."""
        n = as_positive_int(n, "n")
        rng = np.random.default_rng(as_seed(seed))
        Z = rng.standard_normal((n, self.latent_dim)).astype(self.dtype)
        means = self._core.decode(Z, True)
        if mean:
            return means
        if self.likelihood == "bernoulli":
            return (rng.random(means.shape) < means).astype(self.dtype)
        lv = self.weights.get("decoder.obs_logvar", self.obs_logvar)
        return (means + np.exp(0.5 * np.asarray(lv)) * rng.standard_normal(means.shape)).astype(self.dtype)

    # ------------------------------------------------------------------ training

    def fit(self, X, epochs: int = 10, batch_size: Optional[int] = None, learning_rate: float = 1e-3,
            validation_data=None, callback: Optional[Callable] = None, progress: bool = True, *,
            n_samples: int = 1, objective: str = "elbo", beta: float = 1.0,
            warmup_epochs: float = 0.0, patience: Optional[int] = None,
            steps_per_callback: Optional[int] = None, seed: Optional[int] = None) -> "VAE":
        """Train with Adam (PyTorch's rule) on shuffled minibatches; the epoch loop runs in C++.

        n_samples: K samples per datum; objective "elbo" (beta-weighted KL, linear warm-up of
        beta over ``warmup_epochs``) or "iwae" (the K-sample importance-weighted bound).
        validation_data: X_val whose mean ELBO is recorded each epoch; with ``patience`` training
        stops after that many epochs without improvement and the best weights are restored.
        callback(model, info) is called after every epoch (info: epoch, step, loss, val_elbo);
        returning True stops training. Control returns to Python every ``steps_per_callback``
        steps (default: min(50, steps per epoch)) for the progress bar. batch_size: at most the
        rows of X; None means min(rows, 128).

        Divergence stops training with a RuntimeWarning naming the step, the epoch and the remedy
        (a smaller learning_rate). A step diverges when its minibatch loss (-objective per datum)
        or its gradient is not finite, or when the loss has collapsed: it exceeds the first
        step's loss L1 by more than 1e6 (|L1| + input_dim). The weights are then the last good
        ones, those whose loss and gradient last passed these checks (unchanged if step 1 fails).
        Each call starts a fresh Adam state; ``history_`` accumulates over calls.
        """
        Xc = self._check_X(X)
        Xv = None if validation_data is None else self._check_X(validation_data, "validation_data")
        n = Xc.shape[0]
        epochs, n_samples = as_positive_int(epochs, "epochs"), as_positive_int(n_samples, "n_samples")
        batch_size = min(n, 128) if batch_size is None else as_positive_int(batch_size, "batch_size")
        if batch_size > n:
            raise ValueError(f"batch_size must be at most the number of rows of X ({n}), got {batch_size}")
        as_choice(objective, "objective", _OBJECTIVES)
        learning_rate = as_finite_float(learning_rate, "learning_rate", lower=0.0)
        beta = as_finite_float(beta, "beta", lower=0.0, strict=False)
        warmup_epochs = as_finite_float(warmup_epochs, "warmup_epochs", lower=0.0, strict=False)
        patience = as_positive_int(patience, "patience", allow_none=True)
        if patience is not None and Xv is None:
            raise ValueError("patience needs validation_data")
        seed = as_seed(seed)
        steps_per_epoch = math.ceil(n / batch_size)
        # Return to Python at least every 50 steps for the progress bar (and Ctrl-C).
        chunk = (min(steps_per_epoch, 50) if steps_per_callback is None
                 else as_positive_int(steps_per_callback, "steps_per_callback"))
        self._fits += 1
        trainer_cls = core.vae.VaeTrainerF32 if self.dtype == np.float32 else core.vae.VaeTrainerF64
        trainer = trainer_cls(self._core, Xc, batch_size, n_samples, objective, beta,
                              warmup_epochs * steps_per_epoch, learning_rate,
                              self._stream(seed, 3, self._fits))
        self.threads_ = trainer.threads  # threads the C++ loop used for each step
        bar = Progress(epochs * steps_per_epoch, progress, label="loss")
        stopper = _EarlyStopping(patience)
        val_seed = _seed_from(self.seed, 4)
        try:
            for epoch in range(1, epochs + 1):
                losses, diverged = self._run_epoch(trainer, chunk, bar, epoch, learning_rate)
                if not losses:  # diverged at the epoch's first step: nothing to record
                    break
                info = {"epoch": epoch, "step": trainer.step, "loss": float(np.mean(losses)), "val_elbo": None}
                if Xv is not None:
                    info["val_elbo"] = float(self._core.bound(Xv, 1, "elbo", val_seed).mean())
                self.history_["loss"].append(info["loss"])
                self.history_["val_elbo"].append(info["val_elbo"])
                bar.note(_epoch_note(info, epochs))
                if diverged or stopper.stop(self.theta, info["val_elbo"]):
                    break
                if callback is not None and callback(self, info):
                    break
        finally:
            bar.close()
        return self

    # ------------------------------------------------------------------ saving (varinf.serialization)

    # The constructor's arguments in a saved config, with their JSON types.
    _SETTINGS = {"input_dim": int, "latent_dim": int, "hidden": list, "decoder_hidden": list, "activation": str,
                 "likelihood": str, "dtype": str, "seed": int, "obs_logvar": (int, float),
                 "learn_obs_logvar": bool}

    def _save_state(self):
        """config: the constructor's arguments (``_SETTINGS``) and ``fits`` (the number of fit
        calls, which seeds the next one); arrays: ``weights/{name}`` for each of ``weights`` (in the
        model's dtype), ``history/loss`` and ``history/val_elbo`` [epochs] (NaN: no validation)."""
        config = {key: getattr(self, key) for key in self._SETTINGS}
        config.update(hidden=list(self.hidden), decoder_hidden=list(self.decoder_hidden), dtype=self.dtype.name,
                      fits=self._fits)
        arrays = {f"weights/{name}": w for name, w in self.weights.items()}
        val = [np.nan if v is None else v for v in self.history_["val_elbo"]]
        arrays.update({"history/loss": np.asarray(self.history_["loss"], dtype=np.float64),
                       "history/val_elbo": np.asarray(val, dtype=np.float64)})
        return config, arrays

    @classmethod
    def _from_state(cls, config, arrays):
        kwargs = {key: config_value(config, key, kind) for key, kind in cls._SETTINGS.items()}
        if kwargs["dtype"] not in ("float32", "float64"):
            raise FormatError(f"dtype must be 'float32' or 'float64', got {kwargs['dtype']!r}")
        sizes = [kwargs["input_dim"], kwargs["latent_dim"], *kwargs["hidden"], *kwargs["decoder_hidden"]]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
            raise FormatError(f"layer sizes must be integers >= 1, got {sizes!r:.200}")
        # The file must hold every weight the config describes before the network is allocated.
        described = _param_count(kwargs["input_dim"], kwargs["latent_dim"], kwargs["hidden"], kwargs["decoder_hidden"],
                                 kwargs["learn_obs_logvar"] and kwargs["likelihood"] == "gaussian")
        stored = sum(math.prod(arrays.shape(name, dtype=kwargs["dtype"])) for name in arrays.names("weights/"))
        if described != stored:
            raise FormatError(f"the VAE's config describes {described} weights; the file holds {stored}")
        vae = cls(**kwargs)
        vae._fits = config_number(config, "fits", int, minimum=0)
        for name, w in vae.weights.items():
            w[...] = arrays.take(f"weights/{name}", w.shape, vae.dtype)
        loss = arrays.take("history/loss", (None,))
        val = arrays.take("history/val_elbo", loss.shape)
        vae.history_ = {"loss": loss.tolist(), "val_elbo": [None if np.isnan(v) else v for v in val.tolist()]}
        return vae

    # ------------------------------------------------------------------ training internals

    @staticmethod
    def _run_epoch(trainer, chunk: int, bar, epoch: int, learning_rate: float) -> tuple:
        """Steps until the epoch ends; (minibatch losses, whether training diverged). At a
        divergence the trainer has put back the last good weights; this warns."""
        losses = []
        while True:
            result = trainer.run(chunk)
            losses.extend(result["losses"].tolist())
            bar.update(len(result["losses"]))
            if result["diverged_step"] >= 0:
                warnings.warn(_divergence_message(result, trainer, epoch, learning_rate), RuntimeWarning,
                              stacklevel=3)
                return losses, True
            if result["epoch_end"]:
                return losses, False


class _EarlyStopping:
    """Stop after `patience` epochs without a better validation ELBO; restore the best theta
    (docs/math.md section 8.6)."""

    def __init__(self, patience: Optional[int]):
        self.patience = patience
        self.best, self.best_theta, self.waited = -np.inf, None, 0

    def stop(self, theta: np.ndarray, value: Optional[float]) -> bool:
        if self.patience is None:
            return False
        if value > self.best:
            self.best, self.best_theta, self.waited = value, theta.copy(), 0
            return False
        self.waited += 1
        if self.waited < self.patience:
            return False
        theta[:] = self.best_theta
        return True


def _divergence_message(result: dict, trainer, epoch: int, learning_rate: float) -> str:
    """What diverged at which step, where the weights are, and the remedy."""
    step = result["diverged_step"]
    reason = {"nonfinite_loss": "non-finite loss",
              "nonfinite_gradient": "non-finite gradient",
              "collapse": (f"the minibatch loss {result['diverged_loss']:.4g} collapsed far above step 1's "
                           f"{trainer.first_loss:.4g} (limit {trainer.loss_limit:.4g})")}[result["divergence"]]
    where = "unchanged" if step == 1 else f"back where step {step - 1} started, the last good point"
    return (f"VAE.fit diverged at step {step} (epoch {epoch}): {reason}; training stopped and the weights are "
            f"{where}. Use a smaller learning_rate (this fit's: {learning_rate:g}).")


def _epoch_note(info: dict, epochs: int) -> str:
    text = f"epoch {info['epoch']}/{epochs} loss {info['loss']:.4f}"
    if info["val_elbo"] is not None:
        text += f" val_elbo {info['val_elbo']:.4f}"
    return text
