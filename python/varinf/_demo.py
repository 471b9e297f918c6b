"""``python -m varinf demo``: exact GP, SGPR and SVGP forecasting the Mauna Loa CO2 record, and a
VAE on handwritten digits, with one comparison table and plots."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

# Demo sizes: (full run, --quick run for tests).
_GPR_ITER = (1000, 20)
_SGPR_ITER = (1000, 20)
_SVGP_STEPS = (6000, 50)
_VAE_EPOCHS = (150, 2)
NUM_INDUCING = 64
SEED = 0


def co2_kernel():
    """The structure of Rasmussen & Williams' CO2 kernel (GPML section 5.4.3): a smooth
    long-term trend, a seasonal component that may decay, medium-term irregularities."""
    from . import kernels as K

    trend = K.SquaredExponential(variance=1.0, lengthscales=30.0)
    seasonal = K.Periodic(variance=0.1, lengthscales=1.0, period=1.0) * K.SquaredExponential(1.0, 50.0)
    irregular = K.RationalQuadratic(variance=0.01, lengthscales=1.0, alpha=1.0)
    return trend + seasonal + irregular


@dataclass
class _Co2:
    """Monthly CO2: inputs in years since 1958 (X [n, 1]), standardised ppm (y [n])."""
    X: np.ndarray
    y: np.ndarray
    train: np.ndarray
    shift: float
    scale: float

    @classmethod
    def load(cls):
        from . import datasets

        t, co2 = datasets.load_co2(monthly=True)
        train = t < 1990.0
        shift, scale = float(co2[train].mean()), float(co2[train].std())
        return cls((t - 1958.0)[:, None], (co2 - shift) / scale, train, shift, scale)

    def split(self):
        return self.X[self.train], self.y[self.train], self.X[~self.train], self.y[~self.train]


@dataclass
class _Row:
    model: str
    seconds: float
    threads: int
    bound: float  # per datum, original units
    rmse: float = float("nan")
    nlpd: float = float("nan")

    def cells(self):
        def fmt(v, spec):
            return "" if not np.isfinite(v) else format(v, spec)
        return (self.model, fmt(self.seconds, ".2f"), str(self.threads) if self.threads else "",
                fmt(self.bound, ".3f"), fmt(self.rmse, ".2f"), fmt(self.nlpd, ".3f"))


def _timed(fit):
    start = time.perf_counter()
    fit()
    return time.perf_counter() - start


def _gp_row(name, model, data, seconds, bound):
    """Test RMSE (ppm) and NLPD (nats, ppm scale) of a fitted GP on 1990-2001."""
    import varinf as vi

    _, _, Xte, yte = data.split()
    mean, _ = model.predict_y(Xte)
    rmse = float(np.sqrt(np.mean((mean - yte) ** 2)) * data.scale)
    nlpd = float(-np.mean(model.predict_log_density(Xte, yte)) + np.log(data.scale))
    # Bounds on log p(y) in standardised units become ppm units by the Jacobian -n log(scale).
    return _Row(name, seconds, vi.get_num_threads(), bound - np.log(data.scale), rmse, nlpd)


def _fit_gps(data, quick):
    import varinf as vi

    Xtr, ytr, _, _ = data.split()
    n = len(ytr)
    gpr = vi.GPR(Xtr, ytr, co2_kernel(), noise_variance=1e-3, mean="constant")
    seconds = _timed(lambda: gpr.fit(max_iter=_GPR_ITER[quick]))
    rows = [_gp_row("exact GP (L-BFGS-B)", gpr, data, seconds, gpr.log_marginal_likelihood() / n)]

    Z = vi.models.sgpr.inducing_points(Xtr, NUM_INDUCING, seed=SEED)  # [m, 1]
    sgpr = vi.SGPR(Xtr, ytr, co2_kernel(), Z=Z, noise_variance=1e-3, mean="constant")
    seconds = _timed(lambda: sgpr.fit(max_iter=_SGPR_ITER[quick]))
    rows.append(_gp_row(f"SGPR m={NUM_INDUCING} (L-BFGS-B)", sgpr, data, seconds, sgpr.elbo() / n))

    svgp = vi.SVGP(co2_kernel(), vi.likelihoods.Gaussian(1e-3), Z=Z, num_data=n, mean="constant")
    seconds = _timed(lambda: svgp.fit(Xtr, ytr, iterations=_SVGP_STEPS[quick], batch_size=128,
                                      learning_rate=0.01, natgrad=True, gamma=0.1, seed=SEED, progress=False))
    rows.append(_gp_row(f"SVGP m={NUM_INDUCING} (Adam+natgrad, B=128)", svgp, data, seconds,
                        svgp.elbo(Xtr, ytr) / n))
    line = np.polyval(np.polyfit(Xtr[:, 0], ytr, 1), data.split()[2][:, 0])
    line_rmse = float(np.sqrt(np.mean((line - data.split()[3]) ** 2)) * data.scale)
    rows.append(_Row("linear trend (least squares)", float("nan"), 0, float("nan"), line_rmse))
    return {"GPR": gpr, "SGPR": sgpr, "SVGP": svgp}, rows


def _fit_vae(quick):
    import varinf as vi

    X, labels = vi.datasets.load_digits_binarized()
    Xtr, Xte, _, lte = vi.datasets.train_test_split(X, labels, test_fraction=0.2, seed=SEED)
    vae = vi.VAE(64, 2, hidden=(128,), seed=SEED)
    seconds = _timed(lambda: vae.fit(Xtr, epochs=_VAE_EPOCHS[quick], batch_size=64, learning_rate=3e-3,
                                     validation_data=Xte, progress=False))
    train_elbo = float(vae.elbo(Xtr, k=10).mean())
    test_elbo = float(vae.elbo(Xte, k=10).mean())
    row = _Row("VAE 64-128-2 on 8x8 digits (Adam)", seconds, int(vae.threads_), train_elbo, nlpd=-test_elbo)
    return vae, (Xte, lte), row


def _table(rows):
    header = ("model", "fit s", "threads", "log lik. or bound / datum", "test RMSE (ppm)", "test NLPD")
    cells = [header] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _write_plots(directory, gps, data, vae, vae_test):
    """PNG files in ``directory``; the paths written."""
    import matplotlib.pyplot as plt

    from . import plot

    os.makedirs(directory, exist_ok=True)
    paths = []

    def save(fig, name):
        path = os.path.join(directory, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    Xte, yte = data.split()[2:]
    fig, axes = plt.subplots(len(gps), 1, figsize=(9, 3.2 * len(gps)), sharex=True, layout="constrained")
    for ax, (name, model) in zip(axes, gps.items()):
        plot.plot_predictive(model, data.split()[0], data.split()[1], ax=ax, xlim=(0.0, data.X.max() + 1.0),
                             x_offset=1958.0, y_offset=data.shift, y_scale=data.scale, label=name)
        ax.plot(1958.0 + Xte[:, 0], data.shift + data.scale * yte, ".", color="C1", markersize=3,
                label="held out (1990-2001)")
        ax.legend(loc="upper left", fontsize="small")
        ax.set_ylabel("CO2 (ppm)")
    axes[-1].set_xlabel("year")
    save(fig, "co2_forecast.png")
    save(plot.plot_training_curve(gps["SVGP"]).figure, "svgp_training.png")
    save(plot.plot_training_curve(vae).figure, "vae_training.png")
    save(plot.plot_reconstructions(vae, vae_test[0]).figure, "vae_reconstructions.png")
    save(plot.plot_samples(vae, n=64, seed=SEED).figure, "vae_samples.png")
    save(plot.plot_latent(vae, vae_test[0], labels=vae_test[1]).figure, "vae_latent.png")
    return paths


def _matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def demo(quick: bool = False, plots: str | None = "varinf-demo-plots") -> int:
    """Fit the three GPs to CO2 and a VAE to digits; print the table; write the plots."""
    import varinf as vi

    start = time.perf_counter()
    data = _Co2.load()
    print(f"varinf {vi.__version__} ({vi.build_variant} build, {vi.get_num_threads()} threads)")
    print(f"Mauna Loa CO2, monthly means: {int(data.train.sum())} months 1958-1989 for training, "
          f"{int((~data.train).sum())} months 1990-2001 held out; 1797 8x8 binarised digits, 20% held out\n")
    gps, rows = _fit_gps(data, bool(quick))
    vae, vae_test, vae_row = _fit_vae(bool(quick))
    print(_table(rows + [vae_row]))
    print("\nGP rows: log marginal likelihood (exact GP) or ELBO (SGPR, SVGP) per training month, and the test")
    print("  negative log predictive density per month, both for y in ppm. VAE row: ELBO per training image and")
    print("  test -ELBO per image (an upper bound on the test NLL), in nats; threads: varinf's thread count.")
    print(f"\nFitted exact GP (standardised units, time in years):\n  {gps['GPR']}")
    if plots:
        if _matplotlib_available():
            paths = _write_plots(plots, gps, data, vae, vae_test)
            print(f"\nPlots written to {os.path.abspath(plots)}: " + ", ".join(os.path.basename(p) for p in paths))
        else:
            print('\nPlots skipped: matplotlib is not installed (pip install "varinf[plot]" to get them).')
    print(f"\nTotal time: {time.perf_counter() - start:.1f} s")
    return 0
