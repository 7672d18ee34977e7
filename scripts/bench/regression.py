"""The VIB's regression head (Gaussian p(y|z), defaults: selection by cross-validation, ensemble,
variance calibration) next to a tuned RBF-SVR and a random-forest regressor, on fixed folds.

    python scripts/bench/regression.py PIPELINE_BINARY WORK_DIR

Data sets (REGRESSION_SETS picks some by prefix, comma-separated):
- `peanut-stages`: the REAL peanut stem-rot leaf spectra of ../shared/real_spectra (Wei et al.
  2021, Remote Sensing 13, 2833; read in place, never copied), the five stages coded as an ordinal
  score: Healthy 0, Presymptomatic 1, Lesion_only 2, Mild 3, Severe 4. Stratified 10-fold CV by
  stage, shuffle, seed 0 (the folds of the classification benchmark).
- `canopy-severity`: the bundled canopy library (PROSPECT-D + 4SAIL; healthy, rust, blight),
  every 10 nm, noise 0.005, target = the simulated severity (0 for healthy, 0.1-1 diseased);
  10 folds stratified by class.

Per method and fold: Spearman's rho, RMSE, MAE, R^2 (and for the VIB the 90% interval coverage
and NLL); mean +- SD over folds, and the rho of all out-of-fold predictions pooled.

Environment: VIB_ARGS (extra `pipeline train` options), REGRESSION_JOBS (folds at once, default 2,
OMP_NUM_THREADS=1 each), REGRESSION_FOLDS (first N folds only), REGRESSION_METHODS (method
prefixes to run).
"""
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.stats import spearmanr
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from spectra import canopy, peanut

binary, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
jobs = int(os.environ.get("REGRESSION_JOBS", "2"))
max_folds = int(os.environ.get("REGRESSION_FOLDS", "10"))
methods_wanted = [m for m in os.environ.get("REGRESSION_METHODS", "").split(",") if m]
STAGES = ["Healthy", "Presymptomatic", "Lesion_only", "Mild", "Severe"]


def peanut_stages():
    wavelengths, x, labels = peanut()
    return wavelengths, x, np.array([STAGES.index(l) for l in labels], dtype=float), labels


def canopy_severity():
    wavelengths, x, labels, severity = canopy()
    return wavelengths, x, severity, labels


def data_sets():
    yield ("peanut-stages (0-4)",) + peanut_stages()
    yield ("canopy-severity (0-1)",) + canopy_severity()


def write_table(path, wavelengths, x, y):
    with open(path, "w") as f:
        f.write("target," + ",".join(f"{w:g}" for w in wavelengths) + "\n")
        for value, row in zip(y, x):
            f.write(f"{value:g}," + ",".join(f"{v:.6g}" for v in row) + "\n")


def vib_fold(wavelengths, x_train, y_train, x_test, y_test, tag, extra):
    train, test = os.path.join(work, f"{tag}-train.csv"), os.path.join(work, f"{tag}-test.csv")
    model, metrics = os.path.join(work, f"{tag}.safetensors"), os.path.join(work, f"{tag}.json")
    predictions = os.path.join(work, f"{tag}-predictions.parquet")
    write_table(train, wavelengths, x_train, y_train)
    write_table(test, wavelengths, x_test, y_test)
    env = dict(os.environ, OMP_NUM_THREADS="1" if jobs > 1 else os.environ.get("OMP_NUM_THREADS", "2"))
    run = lambda *a: subprocess.run([binary, "-q", *a], check=True, stdout=subprocess.DEVNULL, env=env)
    run("train", "--spectra", train, "--target-column", "target", "--out", model, "--overwrite", "--seed", "0", *extra)
    run("evaluate", "--spectra", test, "--target-column", "target", "--model", model, "--metrics", metrics,
        "--predictions", predictions, "--overwrite")
    m = json.load(open(metrics))
    # The pooled rho needs each row's predicted mean: the predictions table, in the test table's order.
    import pyarrow.parquet as pq
    means = np.array(pq.read_table(predictions).column("predicted_mean").to_pylist())
    return m, means


def svr_fit_predict(x_train, y_train, x_test):
    grid = {"svr__C": np.logspace(-1, 4, 6), "svr__gamma": np.logspace(-5, 0, 6), "svr__epsilon": [0.01, 0.1, 0.3]}
    folds = KFold(n_splits=5, shuffle=True, random_state=0)
    model = GridSearchCV(make_pipeline(StandardScaler(), SVR(kernel="rbf")), grid, cv=folds, n_jobs=jobs,
                         scoring="neg_mean_squared_error")
    return model.fit(x_train, y_train).predict(x_test)


def scores(y, p):
    rmse = float(np.sqrt(np.mean((y - p) ** 2)))
    sst = float(np.sum((y - y.mean()) ** 2))
    return {"rho": float(spearmanr(y, p).correlation), "rmse": rmse, "mae": float(np.mean(np.abs(y - p))),
            "r2": 1.0 - float(np.sum((y - p) ** 2)) / sst if sst > 0 else float("nan")}


vib_extra = os.environ.get("VIB_ARGS", "").split()
only = [s for s in os.environ.get("REGRESSION_SETS", "").split(",") if s]
results = {}
for name, wavelengths, x, y, strata in data_sets():
    if only and not any(name.startswith(o) for o in only):
        continue
    folds = list(StratifiedKFold(n_splits=10, shuffle=True, random_state=0).split(x, strata))[:max_folds]
    results[name] = {}
    print(f"\n{name}: {len(y)} spectra, {len(wavelengths)} bands, {len(folds)} of 10 folds", flush=True)
    methods = {
        "VIB Gaussian head (defaults)": "vib",
        "RBF-SVR (tuned C, gamma, epsilon)": "svr",
        "random forest regressor (500 trees)": "rf",
    }
    if methods_wanted:
        methods = {k: v for k, v in methods.items() if any(k.startswith(m) for m in methods_wanted)}
    for method, kind in methods.items():
        t = time.time()
        tag = name.split()[0]
        per_fold, pooled_y, pooled_p, extra = [], [], [], []
        if kind == "vib":
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                out = list(pool.map(lambda kf: vib_fold(wavelengths, x[kf[1][0]], y[kf[1][0]], x[kf[1][1]], y[kf[1][1]],
                                                        f"{tag}-{kf[0]}", vib_extra), enumerate(folds)))
            for (tr, te), (m, means) in zip(folds, out):
                per_fold.append({"rho": m["spearman_rho"], "rmse": m["rmse"], "mae": m["mae"], "r2": m["r_squared"]})
                extra.append((m["coverage"], m["negative_log_likelihood_nats"], m["calibration"]["coverage_before"]))
                if means is not None:
                    pooled_y.extend(y[te])
                    pooled_p.extend(means)
        else:
            for tr, te in folds:
                if kind == "svr":
                    p = svr_fit_predict(x[tr], y[tr], x[te])
                else:
                    p = RandomForestRegressor(n_estimators=500, random_state=0, n_jobs=jobs).fit(x[tr], y[tr]).predict(x[te])
                per_fold.append(scores(y[te], p))
                pooled_y.extend(y[te])
                pooled_p.extend(p)
        seconds = time.time() - t
        summary = {k: (float(np.mean([f[k] for f in per_fold])), float(np.std([f[k] for f in per_fold])))
                   for k in ["rho", "rmse", "mae", "r2"]}
        pooled = float(spearmanr(pooled_y, pooled_p).correlation) if pooled_y else None
        line = "  ".join(f"{k} {m:.3f} +- {s:.3f}" for k, (m, s) in summary.items())
        tail = ""
        if extra:
            tail = (f"  coverage90 {np.mean([e[0] for e in extra]):.3f} (uncalibrated {np.mean([e[2] for e in extra]):.3f})"
                    f"  NLL {np.mean([e[1] for e in extra]):.3f}")
        pooled_text = f"  pooled rho {pooled:.3f}" if pooled is not None else ""
        print(f"  {method:<38} {line}{pooled_text}{tail}   ({seconds:.0f} s)", flush=True)
        results[name][method] = {"summary": summary, "pooled_rho": pooled, "folds": per_fold, "seconds": seconds,
                                 "coverage": [e[0] for e in extra], "nll": [e[1] for e in extra]}
json.dump(results, open(os.path.join(work, "regression.json"), "w"), indent=2)
print(f"\nwritten {os.path.join(work, 'regression.json')}")
