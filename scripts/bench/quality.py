"""10-fold cross-validated accuracy of the VIB (the `pipeline` binary, default settings) next to a
tuned RBF-SVM on first-derivative spectra and a random forest, on the bundled canopy library.

    python scripts/bench/quality.py PIPELINE_BINARY WORK_DIR

The library's 1200 simulated canopy spectra (PROSPECT-D + 4SAIL; healthy, rust, blight) are taken
every 10 nm from 400 to 2500 nm with Gaussian noise of 0.005 reflectance (a field spectrometer's
order), once over all severities (rust and blight overlap by design at low severity) and once for
symptomatic plants (severity >= 0.5). Folds are stratified and seeded; the VIB and the baselines see
the same folds.
"""
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
from scipy.signal import savgol_filter
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

binary, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
library = os.path.join(os.path.dirname(__file__), "../../crates/synth/library")
lines, bands = 1200, 2101
cube = np.fromfile(os.path.join(library, "canopy.img"), dtype="<f4").reshape(bands, lines).T
meta = list(csv.DictReader(open(os.path.join(library, "canopy.csv"))))
labels = np.array([m["label"] for m in meta])
severity = np.array([float(m["severity"]) for m in meta])
step = np.arange(0, bands, 10)
wavelengths = 400 + step
rng = np.random.default_rng(0)
spectra = cube[:, step] + rng.normal(0, 0.005, size=(lines, len(step)))


def write_table(path, x, y):
    with open(path, "w") as f:
        f.write("label," + ",".join(str(w) for w in wavelengths) + "\n")
        for label, row in zip(y, x):
            f.write(label + "," + ",".join(f"{v:.5f}" for v in row) + "\n")


def vib_fold(x_train, y_train, x_test, y_test, tag):
    train, test = os.path.join(work, f"{tag}-train.csv"), os.path.join(work, f"{tag}-test.csv")
    model, metrics = os.path.join(work, f"{tag}.safetensors"), os.path.join(work, f"{tag}.json")
    write_table(train, x_train, y_train)
    write_table(test, x_test, y_test)
    run = lambda *a: subprocess.run([binary, "-q", *a], check=True, stdout=subprocess.DEVNULL)
    extra = os.environ.get("VIB_ARGS", "").split()
    run("train", "--spectra", train, "--label-column", "label", "--out", model, "--overwrite", "--seed", "0", *extra)
    run("evaluate", "--spectra", test, "--label-column", "label", "--model", model, "--metrics", metrics, "--overwrite")
    return json.load(open(metrics))["overall_accuracy"]


def svm():
    grid = {"svc__C": np.logspace(-1, 4, 6), "svc__gamma": np.logspace(-4, 0, 5)}
    return GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="rbf")), grid, cv=3, n_jobs=1)


def derivative(x):
    return savgol_filter(x, window_length=7, polyorder=2, deriv=1, axis=1)


results = {}
only = os.environ.get("QUALITY_SETS")  # e.g. "all" to run only the first set
for name, keep in [("all severities", np.ones(lines, bool)), ("severity >= 0.5", (labels == "healthy") | (severity >= 0.5))]:
    if only and not name.startswith(only):
        continue
    x, y = spectra[keep], labels[keep]
    scores = {"VIB (defaults)": [], "RBF-SVM, 1st derivative (tuned)": [], "random forest (500 trees)": []}
    seconds = {k: 0.0 for k in scores}
    folds = StratifiedKFold(n_splits=10, shuffle=True, random_state=0)
    for k, (tr, te) in enumerate(folds.split(x, y)):
        t = time.time()
        scores["VIB (defaults)"].append(vib_fold(x[tr], y[tr], x[te], y[te], f"{name[:3]}-{k}"))
        seconds["VIB (defaults)"] += time.time() - t
        t = time.time()
        model = svm().fit(derivative(x[tr]), y[tr])
        scores["RBF-SVM, 1st derivative (tuned)"].append(model.score(derivative(x[te]), y[te]))
        seconds["RBF-SVM, 1st derivative (tuned)"] += time.time() - t
        t = time.time()
        forest = RandomForestClassifier(n_estimators=500, random_state=0, n_jobs=1).fit(x[tr], y[tr])
        scores["random forest (500 trees)"].append(forest.score(x[te], y[te]))
        seconds["random forest (500 trees)"] += time.time() - t
    print(f"\n{name}: {len(y)} spectra, 10-fold CV")
    for method, s in scores.items():
        print(f"  {method:<34} {np.mean(s):.4f} +- {np.std(s):.4f}   ({seconds[method]:.0f} s)")
    results[name] = {m: {"mean": float(np.mean(s)), "std": float(np.std(s)), "folds": [float(v) for v in s]} for m, s in scores.items()}
json.dump(results, open(os.path.join(work, "quality.json"), "w"), indent=2)
print(f"\nwritten {os.path.join(work, 'quality.json')}")
