"""varinf's command line: ``python -m varinf demo | fit | predict`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings

_DESCRIPTION = "varinf's command line: a demo, and GP models fitted to data files, in one process or on a " \
               "Dask cluster (--dask). Run 'python -m varinf COMMAND --help' for a command's options."
_EXAMPLES = """examples:
  python -m varinf demo --plots plots/
  python -m varinf fit --model sgpr --target price --inducing 200 houses.csv -o houses.vinf
  python -m varinf predict houses.vinf new_houses.csv -o predictions.csv
  python -m varinf fit --model svgp --target price,rent houses.csv -o both.vinf
  python -m varinf fit --model svgp-classifier --target species iris.csv -o iris.vinf
  python -m varinf fit --model sgpr --target price 'houses/part-*.csv' -o houses.vinf --dask tcp://scheduler:8786
  python -m varinf predict houses.vinf 'new/*.parquet' -o 'predictions/part-*.csv' --dask local:4

exit status: 0 on success, 2 for bad arguments or bad files (one line on stderr)."""

_FORMATS = ("Data files: UTF-8 CSV with a header row (optionally .csv.gz), .npy holding a 2-D array, or .npz "
            "holding arrays X [n, d] and y [n] (or the 1-D target arrays --target names). A numpy file's columns "
            "are named by their index (0, 1, ...).")


def _demo_parser(sub):
    p = sub.add_parser("demo", help="fit exact GP, SGPR and SVGP to the Mauna Loa CO2 record and a VAE to digits",
                       description="Fits an exact GP, SGPR and SVGP to the monthly Mauna Loa CO2 record up to 1990 "
                                   "and forecasts 1990-2001, fits a VAE to 8x8 digits, prints one comparison "
                                   "table and writes plots (when matplotlib is installed).")
    p.add_argument("--quick", action="store_true", help="a few optimiser steps only (for tests)")
    p.add_argument("--plots", metavar="DIR", default="varinf-demo-plots",
                   help="folder for the PNG plots (default: %(default)s)")
    p.add_argument("--no-plots", dest="plots", action="store_const", const=None, help="write no plots")


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _dask_cluster(text):
    """--dask: a scheduler's address, or local:N with N a positive number of workers."""
    if text.startswith("local:"):
        workers = text[len("local:"):]
        if not (workers.isdigit() and int(workers) > 0):
            raise argparse.ArgumentTypeError(f"expected local:N with N a positive number of workers, got {text!r}")
    elif not text:
        raise argparse.ArgumentTypeError("expected a scheduler address (tcp://host:8786) or local:N")
    return text


_DASK = ("--dask CLUSTER runs the command on a Dask cluster (pip install \"varinf[dask]\"): the address of a "
         "running scheduler (tcp://host:8786), or local:N for N single-threaded worker processes started for "
         "the command. DATA may then be a CSV file (.csv, .csv.gz) or a Parquet file or folder (.parquet), or a "
         "quoted glob of them ('data/part-*.csv'), read by dask.dataframe; the workers read (and write) the "
         "files, so on a remote cluster the paths must be on a file system they share.")


def _fit_parser(sub):
    from ._cli import CLASSIFIER_LIKELIHOODS, KERNELS, MAX_CLASSES, MODELS

    p = sub.add_parser("fit", help="fit a GP to a table and save it",
                       description="Fits a GP regressor (gpr: exact; sgpr: sparse, Titsias' bound; svgp: stochastic "
                                   "variational) or a GP classifier (svgp-classifier) to the columns of a file and "
                                   "saves it. Inputs and outputs are standardised internally (each target on its "
                                   "own); predictions come out in the file's units. svgp fits several targets "
                                   "at once (--target a,b): one latent GP per target, each with its own copy of "
                                   "the kernel and its own noise variance, sharing the inducing points; sgpr "
                                   "fits several targets with one kernel and one noise variance. "
                                   "svgp-classifier takes a target of K >= 2 distinct values (class labels, at "
                                   f"most {MAX_CLASSES} and at most one per 2 rows): 2 classes take the Bernoulli "
                                   "(probit) likelihood on one latent GP, K > 2 the --likelihood on K latent GPs "
                                   "sharing the kernel. " + _FORMATS + " " + _DASK + " With --dask, "
                                   "the standardisation is computed on the cluster and the data stay there, "
                                   "persisted in the workers' memory for the fit; gpr needs the data in memory "
                                   "and does not take --dask; --dask fits one target.")
    p.add_argument("data", help="training data (.csv, .csv.gz, .npy or .npz; with --dask CSV or Parquet files, "
                                "or a quoted glob of them)")
    p.add_argument("--model", required=True, choices=MODELS, help="the model")
    p.add_argument("--target", metavar="COLS",
                   help="the target column: a CSV column name, a column index for .npy, the name of the target "
                        "array for .npz (default y); for --model svgp several, separated by commas (a,b)")
    p.add_argument("--features", metavar="COLS", help="comma-separated feature columns (names, or indices for "
                                                      "numpy files); default: every other column")
    p.add_argument("-o", "--output", default="model.vinf",
                   help="the model file to write, checked before the fit starts (default: %(default)s)")
    p.add_argument("--kernel", choices=KERNELS, default="rbf",
                   help="kernel with one lengthscale per feature (default: %(default)s)")
    p.add_argument("--inducing", metavar="M", type=_positive, default=100,
                   help="inducing points for sgpr/svgp, k-means centres of the inputs (default: %(default)s)")
    p.add_argument("--iterations", type=_positive, help="L-BFGS-B iterations (gpr, sgpr; default 1000) or Adam "
                                                        "steps (svgp; default 2000)")
    p.add_argument("--batch-size", type=_positive, default=256, help="svgp minibatch size (default: %(default)s)")
    p.add_argument("--learning-rate", type=_positive_float, default=0.01,
                   help="svgp Adam learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for k-means and minibatches (default: %(default)s)")
    p.add_argument("--likelihood", choices=CLASSIFIER_LIKELIHOODS,
                   help="svgp-classifier with more than 2 classes: robustmax (GPflow's MultiClass, by quadrature) "
                        "or softmax (Monte Carlo, seeded by --seed); default robustmax. 2 classes always take the "
                        "Bernoulli likelihood")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dask", metavar="CLUSTER", type=_dask_cluster,
                   help="fit sgpr, svgp or svgp-classifier on a Dask cluster: tcp://host:port of a running "
                        "scheduler, or local:N to start N worker processes for the fit")


def _predict_parser(sub):
    p = sub.add_parser("predict", help="predict with a saved model, streaming the data in blocks",
                       description="Writes one CSV row per input row: columns mean,std (the predictive mean and "
                                   "standard deviation of y); for a model of several targets a,b, mean_a,std_a,"
                                   "mean_b,std_b; for a classifier of 2 classes, probability,class (the "
                                   "probability of the second of the two sorted labels, and the more probable "
                                   "label); of K > 2 classes, p_<label> for each label in sorted order (the class "
                                   "probabilities, summing to 1; the label in the shortest text that reads back as "
                                   "the number: p_3, p_0.5), then class (the most probable label). "
                                   "Feature columns are found by name, in every format: a model fitted "
                                   "on a CSV file needs a CSV file with its feature names (in any order, other "
                                   "columns ignored); a model fitted on a numpy file needs a numpy file with "
                                   "the features in the columns they had in the training file. Rows are read and "
                                   "written in blocks, so CSV and .npy files larger than memory work (a .npz file's "
                                   "X is read whole). The output file appears only when complete. " + _FORMATS
                                   + " " + _DASK + " With --dask, the output is partitioned: one CSV file per "
                                   "input partition, named by -o with its '*' replaced by the partition's number "
                                   "(-o 'out/pred-*.csv'), or a new Parquet folder (-o out/pred.parquet); the "
                                   "files appear when all partitions are done.")
    p.add_argument("model", help="a model file written by 'python -m varinf fit'")
    p.add_argument("data", help="inputs (.csv, .csv.gz, .npy or .npz; with --dask CSV or Parquet files, or a "
                                "quoted glob of them)")
    p.add_argument("-o", "--output", default="-",
                   help="predictions CSV to write (default: standard output); with --dask a name with a '*' "
                        "('out/pred-*.csv': one file per partition) or a new folder ending in .parquet")
    p.add_argument("--block-rows", type=_positive, default=10000,
                   help="rows per block (default: %(default)s; with --dask the blocks are the partitions)")
    p.add_argument("--dask", metavar="CLUSTER", type=_dask_cluster,
                   help="predict on a Dask cluster, partition by partition: tcp://host:port of a running "
                        "scheduler, or local:N to start N worker processes for the command")


def _run(args) -> int:
    if args.command == "demo":
        from ._demo import demo
        return demo(quick=args.quick, plots=args.plots)
    from ._cli import fit_command, predict_command
    if args.command == "fit":
        return fit_command(args)
    return predict_command(args, block_rows=args.block_rows)


@contextlib.contextmanager
def _warnings_at_the_end():
    """Shows the warnings of the command when it ends (also on an error), one line each on stderr.
    A line printed during a fit would be broken by its progress bar."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        finally:
            for w in caught:
                print(f"python -m varinf: warning: {' '.join(str(w.message).split())}", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m varinf", description=_DESCRIPTION, epilog=_EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _demo_parser(sub)
    _fit_parser(sub)
    _predict_parser(sub)
    args = parser.parse_args(argv)
    from ._errors import LinAlgError
    from ._tables import TableError
    try:
        with _warnings_at_the_end():
            return _run(args)
    except BrokenPipeError:  # the reader of standard output stopped early (| head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (TableError, ValueError, OSError, LinAlgError) as err:
        print(f"python -m varinf {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"python -m varinf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
