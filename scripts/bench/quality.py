"""Cross-validated accuracy of the VIB (the `pipeline` binary, default settings: selection by
cross-validation, ensemble, temperature scaling) next to a tuned RBF-SVM (raw and first
derivative), a random forest and the deterministic network, on fixed folds.

    python scripts/bench/quality.py PIPELINE_BINARY WORK_DIR

Data sets (QUALITY_SETS picks some by prefix, comma-separated):
- `peanut-5`, `peanut-hvi`, `peanut-hvp`: the REAL peanut stem-rot leaf spectra of
  ../shared/real_spectra (Wei et al. 2021, Remote Sensing 13, 2833; read in place, never copied):
  5 stages, healthy vs infected, healthy vs presymptomatic; stratified 10-fold CV, shuffle, seed 0,
  as in that README.
- `synthetic-all`, `synthetic-symptomatic`: the bundled canopy library (PROSPECT-D + 4SAIL; healthy,
  rust, blight) every 10 nm, noise 0.005, all severities / severity >= 0.5; 10 folds.

Environment: VIB_ARGS (extra `pipeline train` options), QUALITY_JOBS (folds run at once, default 2,
each with OMP_NUM_THREADS=1), QUALITY_FOLDS (use only the first N folds, for quick looks),
QUALITY_METHODS (comma-separated method prefixes to run).
"""
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.signal import savgol_filter
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from spectra import canopy as synthetic, peanut

binary, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
jobs = int(os.environ.get("QUALITY_JOBS", "2"))
max_folds = int(os.environ.get("QUALITY_FOLDS", "10"))
methods_wanted = [m for m in os.environ.get("QUALITY_METHODS", "").split(",") if m]


def data_sets():
    w, x, y = peanut()
    yield "peanut-5 (5 stages)", w, x, y
    infected = np.where(y == "Healthy", "Healthy", "Infected")
    yield "peanut-hvi (healthy vs infected)", w, x, infected
    keep = (y == "Healthy") | (y == "Presymptomatic")
    yield "peanut-hvp (healthy vs presymptomatic)", w, x[keep], y[keep]
    w, x, y, severity = synthetic()
    yield "synthetic-all (all severities)", w, x, y
    keep = (y == "healthy") | (severity >= 0.5)
    yield "synthetic-symptomatic (severity >= 0.5)", w, x[keep], y[keep]


def write_table(path, wavelengths, x, y):
    with open(path, "w") as f:
        f.write("label," + ",".join(f"{w:g}" for w in wavelengths) + "\n")
        for label, row in zip(y, x):
            f.write(label + "," + ",".join(f"{v:.6g}" for v in row) + "\n")


def pipeline_fold(wavelengths, x_train, y_train, x_test, y_test, tag, extra):
    train, test = os.path.join(work, f"{tag}-train.csv"), os.path.join(work, f"{tag}-test.csv")
    model, metrics = os.path.join(work, f"{tag}.safetensors"), os.path.join(work, f"{tag}.json")
    write_table(train, wavelengths, x_train, y_train)
    write_table(test, wavelengths, x_test, y_test)
    env = dict(os.environ, OMP_NUM_THREADS="1" if jobs > 1 else os.environ.get("OMP_NUM_THREADS", "2"))
    run = lambda *a: subprocess.run([binary, "-q", *a], check=True, stdout=subprocess.DEVNULL, env=env)
    run("train", "--spectra", train, "--label-column", "label", "--out", model, "--overwrite", "--seed", "0", *extra)
    run("evaluate", "--spectra", test, "--label-column", "label", "--model", model, "--metrics", metrics, "--overwrite")
    m = json.load(open(metrics))
    return m["overall_accuracy"], m["calibration"], m["negative_log_likelihood_nats"]


def pooled_ece(calibrations, key):
    """ECE over all test folds together (40 spectra per fold are too few for a per-fold ECE):
    the folds' reliability bins summed, then sum |correct - confidence| / n."""
    bins = len(calibrations[0][key])
    count, confidence, correct = np.zeros(bins), np.zeros(bins), np.zeros(bins)
    for c in calibrations:
        for b, row in enumerate(c[key]):
            count[b] += row["samples"]
            confidence[b] += row["mean_confidence"] * row["samples"]
            correct[b] += row["accuracy"] * row["samples"]
    return float(np.abs(correct - confidence).sum() / count.sum())


def svm_fit_score(x_train, y_train, x_test, y_test):
    grid = {"svc__C": np.logspace(-1, 4, 6), "svc__gamma": np.logspace(-5, 0, 6)}
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    model = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="rbf")), grid, cv=folds, n_jobs=jobs)
    return model.fit(x_train, y_train).score(x_test, y_test)


def derivative(x):
    return savgol_filter(x, window_length=7, polyorder=2, deriv=1, axis=1)


vib_extra = os.environ.get("VIB_ARGS", "").split()
methods = {
    "VIB (defaults)": lambda w, a, b, c, d, tag: pipeline_fold(w, a, b, c, d, tag, vib_extra),
    "deterministic network (selected)": lambda w, a, b, c, d, tag: pipeline_fold(w, a, b, c, d, tag + "-det", ["--deterministic"]),
    "RBF-SVM raw (tuned)": lambda w, a, b, c, d, tag: (svm_fit_score(a, b, c, d), None, None),
    "RBF-SVM 1st derivative SG 7,2 (tuned)": lambda w, a, b, c, d, tag: (svm_fit_score(derivative(a), b, derivative(c), d), None, None),
    "random forest (500 trees)": lambda w, a, b, c, d, tag: (
        RandomForestClassifier(n_estimators=500, random_state=0, n_jobs=jobs).fit(a, b).score(c, d), None, None),
}
if methods_wanted:
    methods = {k: v for k, v in methods.items() if any(k.startswith(m) for m in methods_wanted)}

only = [s for s in os.environ.get("QUALITY_SETS", "").split(",") if s]
results = {}
for name, wavelengths, x, y in data_sets():
    if only and not any(name.startswith(o) for o in only):
        continue
    folds = list(StratifiedKFold(n_splits=10, shuffle=True, random_state=0).split(x, y))[:max_folds]
    results[name] = {}
    print(f"\n{name}: {len(y)} spectra, {len(wavelengths)} bands, {len(folds)} of 10 folds", flush=True)
    for method, fn in methods.items():
        t = time.time()
        tag = name.split()[0]
        if method.startswith("VIB") or method.startswith("deterministic"):
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                out = list(pool.map(lambda kf: fn(wavelengths, x[kf[1][0]], y[kf[1][0]], x[kf[1][1]], y[kf[1][1]], f"{tag}-{kf[0]}"), enumerate(folds)))
        else:
            out = [fn(wavelengths, x[tr], y[tr], x[te], y[te], tag) for tr, te in folds]
        seconds = time.time() - t
        acc = [o[0] for o in out]
        calibrations = [o[1] for o in out if o[1] is not None]
        nll = [o[2] for o in out if o[2] is not None]
        ece = [pooled_ece(calibrations, "reliability_after")] if calibrations else []
        extra = ""
        if calibrations:
            raw = pooled_ece(calibrations, "reliability_before")
            extra = f"  ECE {ece[0]:.3f} (uncalibrated {raw:.3f})  NLL {np.mean(nll):.3f}"
        print(f"  {method:<40} {np.mean(acc):.3f} +- {np.std(acc):.3f}{extra}   ({seconds:.0f} s)", flush=True)
        results[name][method] = {"mean": float(np.mean(acc)), "std": float(np.std(acc)), "folds": [float(v) for v in acc],
                                 "ece": float(np.mean(ece)) if ece else None, "nll": float(np.mean(nll)) if nll else None,
                                 "seconds": seconds}
json.dump(results, open(os.path.join(work, "quality.json"), "w"), indent=2)
print(f"\nwritten {os.path.join(work, 'quality.json')}")
