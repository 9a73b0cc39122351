#!/usr/bin/env python3
"""Glucose forecasting model selection — final, self-contained, reproducible script.

    OMP_NUM_THREADS=1 python3 forecast.py            # prints tables, writes results.json

Protocol: per patient, rows [0, 2016) = first 7 days = training, rows [2016, 2880) = test.
All hyper-parameters are chosen on the training days only (forward folds / leave-one-patient-out).
Forecast origins t: test rows with t+h inside the file. Targets: cgm[t+h]. bg_mgdl is never read.
"""
import glob, json, os, sys
import numpy as np

DATA = "/work/shared/data/simglucose"
STEP = 5
DAY = 288
TRAIN_END = 7 * DAY                      # 2016
HIST = 96                                # 8 h of dose history in the curve convolutions
FOLDS = [(4 * DAY, 5 * DAY), (5 * DAY, 6 * DAY), (6 * DAY, 7 * DAY)]   # forward validation folds
HORIZONS = (6, 12)                       # 30, 60 min
LAM_PERSONAL = [0.01, 0.1, 1, 10, 100]
LAM_POP = [0.1, 1, 10, 100, 1000]
LAM_SHRINK = [0.1, 1, 3, 10, 30, 100, 300, 1000]

# curve parameters (chosen on the forward folds, see REPORT.md)
INS_TD, INS_TP, INS_TP2 = 360.0, 100.0, 50.0   # exponential insulin model, minutes
CARB_TP, CARB_TP2 = 25.0, 10.0                 # gamma(k=2) carb absorption peaks, minutes


# ------------------------------------------------------------------ data
def load():
    P = {}
    for f in sorted(glob.glob(os.path.join(DATA, "*.csv"))):
        d = np.genfromtxt(f, delimiter=",", skip_header=1, usecols=(1, 3, 4, 5))   # skips bg_mgdl (col 2)
        P[os.path.basename(f)[:-4]] = dict(cgm=d[:, 0].astype(float), carbs=d[:, 1], bolus=d[:, 2], basal=d[:, 3])
    return P


def patient_scales(p):
    """Per-patient normalisation of treatment features, from the first 4 days only.
    TDD = mean daily (bolus + basal); ISF ~ 1800/TDD; CR ~ total carbs / total bolus."""
    r = slice(0, 4 * DAY)
    tdd = (p["bolus"][r].sum() + p["basal"][r].sum() / 12.0) / 4.0
    cr = p["carbs"][r].sum() / max(p["bolus"][r].sum(), 1e-6)
    isf = 1800.0 / tdd
    return isf / 40.0, isf / cr / 4.0     # (insulin multiplier, carb multiplier)


# ------------------------------------------------------------------ curves
def iob_exp(t, td=INS_TD, tp=INS_TP):
    """oref0 / Loop exponential insulin curve: fraction of a dose still on board t minutes after it."""
    tau = tp * (1 - tp / td) / (1 - 2 * tp / td)
    a = 2 * tau / td
    S = 1 / (1 - a + (1 + a) * np.exp(-td / tau))
    t = np.asarray(t, float)
    v = 1 - S * (1 - a) * ((t ** 2 / (tau * td * (1 - a)) - t / tau - 1) * np.exp(-t / tau) + 1)
    return np.where(t >= td, 0.0, np.where(t <= 0, 1.0, v))


def carb_remaining(t, tp):
    """gamma(k=2) absorption, rate ~ t/tp^2 exp(-t/tp): fraction NOT yet absorbed after t minutes."""
    t = np.maximum(np.asarray(t, float), 0.0)
    return (1 + t / tp) * np.exp(-t / tp)


def conv(x, kern):            # y[t] = sum_{k=0}^{HIST-1} kern[k] x[t-k]
    return np.convolve(x, kern)[: len(x)]


def kernels(remaining, h):
    tau = STEP * np.arange(HIST)
    on_board = remaining(tau)
    rate = remaining(tau) - remaining(tau + STEP)             # fraction acting in (t, t+5 min]  (current activity / absorption rate)
    future = remaining(tau) - remaining(tau + STEP * h)       # fraction acting in (t, t+h]
    return on_board, rate, future


# ------------------------------------------------------------------ features
def features(p, h, treatments=True, tod=False, scales=(1.0, 1.0)):
    c = p["cgm"]
    n = len(c)
    cols, names = [], []

    def add(v, nm):
        cols.append(np.asarray(v, float)); names.append(nm)

    add(c, "c")
    for k in range(1, 13):
        lagk = np.full(n, np.nan); lagk[k:] = c[:-k]
        add(lagk - c, f"d{k}")
    add((c - 120) ** 2 / 100, "c2")
    add(np.maximum(c - 180, 0), "hinge180")
    add(np.maximum(70 - c, 0), "hinge70")
    if treatments:
        s_ins, s_carb = scales
        basal_ref = np.median(p["basal"][:TRAIN_END])
        dose = (p["bolus"] + (p["basal"] - basal_ref) / 12.0) * s_ins
        k_iob, k_act, k_fut = kernels(lambda t: iob_exp(t, INS_TD, INS_TP), h)
        k_fut2 = kernels(lambda t: iob_exp(t, INS_TD, INS_TP2), h)[2]
        ifut = conv(dose, k_fut)
        add(conv(dose, k_iob), "iob"); add(conv(dose, k_act), "iact"); add(ifut, "ifut")
        add(ifut * (c - 120) / 100, "ifut_x_c"); add(conv(dose, k_fut2), "ifut2")
        g = p["carbs"] * s_carb
        k_cob, k_rate, k_cfut = kernels(lambda t: carb_remaining(t, CARB_TP), h)
        k_cfut2 = kernels(lambda t: carb_remaining(t, CARB_TP2), h)[2]
        cfut = conv(g, k_cfut)
        add(conv(g, k_cob), "cob"); add(conv(g, k_rate), "crate"); add(cfut, "cfut")
        add(cfut * (c - 120) / 100, "cfut_x_c"); add(conv(g, k_cfut2), "cfut2")
    if tod:
        hr = (np.arange(n) % DAY) * STEP / 60.0
        for k in (1, 2):
            add(np.sin(2 * np.pi * k * hr / 24), f"sin{k}"); add(np.cos(2 * np.pi * k * hr / 24), f"cos{k}")
    F = np.stack(cols, 1)
    F[:HIST] = np.nan
    y = np.full(n, np.nan); y[:-h] = c[h:] - c[:-h]          # target: change over the horizon
    return F, y, names


def origins(lo, hi, h):
    """forecast origins t in [lo, hi) whose target t+h is < hi and whose history exists."""
    return np.arange(max(lo, HIST), hi - h)


# ------------------------------------------------------------------ ridge (standardised, unpenalised intercept)
def ridge(Xs, ys, lam, std=None, prior=None):
    X = np.vstack(Xs); y = np.concatenate(ys)
    if std is None:
        mu = X.mean(0); sd = X.std(0); sd[sd < 1e-9] = 1.0
    else:
        mu, sd = std
    Z = np.hstack([np.ones((len(X), 1)), (X - mu) / sd])
    pen = np.full(Z.shape[1], float(lam)); pen[0] = 0.0
    rhs = Z.T @ y + (pen * prior if prior is not None else 0.0)
    beta = np.linalg.solve(Z.T @ Z + np.diag(pen), rhs)
    return dict(mu=mu, sd=sd, beta=beta)


def predict(m, X):
    return m["beta"][0] + ((X - m["mu"]) / m["sd"]) @ m["beta"][1:]


def rmse(e): return float(np.sqrt(np.mean(np.square(e))))
def mae(e): return float(np.mean(np.abs(e)))


# ------------------------------------------------------------------ baselines
def ar2(c, t, h):
    y1, y0 = np.log(c[t - 1] / 140.0), np.log(c[t] / 140.0)
    for _ in range(h):
        y1, y0 = y0, -0.723 * y1 + 1.716 * y0
    return np.clip(140 * np.exp(y0), 36, 400)


def linex(c, t, h, n):
    x = np.arange(-n + 1, 1, dtype=float); xm = x.mean()
    W = np.stack([c[t + int(k)] for k in x], 1); ym = W.mean(1)
    slope = ((x - xm) * (W - ym[:, None])).sum(1) / ((x - xm) ** 2).sum()
    return np.clip(ym + slope * (h - xm), 40, 400)


def clarke(ref, pred):
    A = (np.abs(pred - ref) <= 0.2 * ref) | ((ref < 70) & (pred < 70))
    E = ((ref >= 180) & (pred <= 70)) | ((ref <= 70) & (pred >= 180))
    C = ((ref >= 70) & (ref <= 290) & (pred >= ref + 110)) | ((ref >= 130) & (ref <= 180) & (pred <= 1.4 * ref - 182))
    D = ((ref >= 240) & (pred >= 70) & (pred <= 180)) | ((ref <= 175 / 3) & (pred <= 180) & (pred >= 70)) | \
        ((ref >= 175 / 3) & (ref <= 70) & (pred >= 1.2 * ref))
    z = np.full(len(ref), "B"); z[D] = "D"; z[C] = "C"; z[E] = "E"; z[A] = "A"
    return {k: float(np.mean(z == k)) for k in "ABCDE"}


# ------------------------------------------------------------------ model family
class Family:
    """One feature set (treatments on/off, tod on/off), both horizons, all patients."""

    def __init__(self, P, treatments=True, tod=False, scaled=True):
        self.P, self.names = P, list(P)
        self.F = {}
        for nm, p in P.items():
            sc = patient_scales(p) if scaled else (1.0, 1.0)
            for h in HORIZONS:
                self.F[nm, h] = features(p, h, treatments, tod, sc)

    def data(self, nm, h, idx):
        F, y, _ = self.F[nm, h]
        return F[idx], y[idx]

    # ---- pure personal ridge, lambda by forward folds
    def personal_lambda(self, h):
        err = {l: [] for l in LAM_PERSONAL}
        for nm in self.names:
            for a, b in FOLDS:
                Xt, yt = self.data(nm, h, origins(0, a, h)); Xv, yv = self.data(nm, h, np.arange(a, b - h))
                for l in LAM_PERSONAL:
                    err[l].append(predict(ridge([Xt], [yt], l), Xv) - yv)
        r = {l: rmse(np.concatenate(e)) for l, e in err.items()}
        return min(r, key=r.get), r

    def personal(self, nm, h, lam, lo=0, hi=TRAIN_END):
        X, y = self.data(nm, h, origins(lo, hi, h))
        return ridge([X], [y], lam)

    # ---- population model (pooled training days of the given patients)
    def pop(self, pats, h, lam):
        XY = [self.data(o, h, origins(0, TRAIN_END, h)) for o in pats]
        return ridge([x for x, _ in XY], [y for _, y in XY], lam)

    def pop_lambda_strict(self, held, h):
        """lambda for the model that will be applied to `held`, chosen by inner leave-one-out
        over the OTHER patients only (held-out patient's data never used)."""
        others = [o for o in self.names if o != held]
        r = {}
        for l in LAM_POP:
            e = []
            for v in others:
                m = self.pop([o for o in others if o != v], h, l)
                Xv, yv = self.data(v, h, origins(0, TRAIN_END, h))
                e.append(predict(m, Xv) - yv)
            r[l] = rmse(np.concatenate(e))
        return min(r, key=r.get)

    def lopo(self, h):
        out = {}
        for nm in self.names:
            lam = self.pop_lambda_strict(nm, h)
            out[nm] = self.pop([o for o in self.names if o != nm], h, lam)
            out[nm]["lam"] = lam
        return out

    # ---- personalisation: ridge toward the population coefficients (same standardisation)
    @staticmethod
    def shrink(pop, X, y, lam_p):
        return ridge([X], [y], lam_p, std=(pop["mu"], pop["sd"]), prior=pop["beta"])

    def shrink_lambda(self, pops, h):
        err = {l: [] for l in LAM_SHRINK}
        for nm in self.names:
            for a, b in FOLDS:
                Xt, yt = self.data(nm, h, origins(0, a, h)); Xv, yv = self.data(nm, h, np.arange(a, b - h))
                for l in LAM_SHRINK:
                    err[l].append(predict(self.shrink(pops[nm], Xt, yt, l), Xv) - yv)
        r = {l: rmse(np.concatenate(e)) for l, e in err.items()}
        return min(r, key=r.get), r

    def fold_residuals(self, fitter, h):
        """out-of-sample residuals on the training days (forward folds), for interval calibration."""
        res = {}
        for nm in self.names:
            rs, Xs, ps = [], [], []
            for a, b in FOLDS:
                m = fitter(nm, h, a)
                Xv, yv = self.data(nm, h, np.arange(a, b - h))
                pv = predict(m, Xv); rs.append(yv - pv); Xs.append(Xv); ps.append(pv)
            res[nm] = (np.concatenate(rs), np.vstack(Xs), np.concatenate(ps))
        return res


# ------------------------------------------------------------------ prediction intervals
def vol_feats(X, yhat, names):
    """local-volatility inputs: |predicted change|, |15-min change|, carbs-on-board indicator (if present)."""
    i3 = names.index("d3")
    v = [np.ones(len(X)), np.abs(yhat), np.abs(X[:, i3])]
    if "cob" in names:
        v.append(np.minimum(X[:, names.index("cob")], 50) / 50)
    return np.stack(v, 1)


class Interval:
    """80% interval: residual r = y - yhat; sigma(t) = s_p * max(0.3, V(t) @ a),
    s_p = the patient's RMS out-of-sample residual on the training-day folds, a fitted by least squares of
    |r|/s_p on V(t)/(1 or s_p); then the 10% / 90% quantiles of r / sigma over all patients' fold residuals."""

    def __init__(self, fold_res, names, local=True):
        self.names, self.local = names, local
        self.sp = {nm: rmse(r) for nm, (r, X, p) in fold_res.items()}
        R = np.concatenate([r / self.sp[nm] for nm, (r, X, p) in fold_res.items()])
        if local:
            V = np.vstack([self._V(X, p, nm) for nm, (r, X, p) in fold_res.items()])
            self.a = np.linalg.lstsq(V, np.abs(R), rcond=None)[0]
        Z = np.concatenate([r / self.sigma(nm, X, p) for nm, (r, X, p) in fold_res.items()])
        self.q = np.quantile(Z, [0.1, 0.9])

    def _V(self, X, p, nm):
        V = vol_feats(X, p, self.names); V[:, 1:3] /= self.sp[nm]
        return V

    def sigma(self, nm, X, p):
        s = self.sp[nm]
        if not self.local:
            return np.full(len(X), s)
        return s * np.maximum(0.3, self._V(X, p, nm) @ self.a)

    def bounds(self, nm, X, yhat_change, c_now):
        s = self.sigma(nm, X, yhat_change)
        lo = np.clip(c_now + yhat_change + self.q[0] * s, 40, 400)
        hi = np.clip(c_now + yhat_change + self.q[1] * s, 40, 400)
        return lo, hi


# ------------------------------------------------------------------ hypo-safety adjustment (Clarke)
LOW_T, LOW_W = 100.0, 30.0
K_GRID = [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0, 25.0, 30.0]


def low_adjust(pred, k):
    """pull predictions in the low range down: p - k * clip((100 - p) / 30, 0, 1)  (full k at p <= 70)."""
    return np.clip(pred - k * np.clip((LOW_T - pred) / LOW_W, 0, 1), 40, 400)


def choose_k(fold_res):
    """smallest k whose Clarke A+B on the out-of-sample training-fold predictions is >= 99 %."""
    ref = np.concatenate([X[:, 0] + p + r for r, X, p in fold_res.values()])
    pr = np.concatenate([np.clip(X[:, 0] + p, 40, 400) for r, X, p in fold_res.values()])
    ab = {}
    for k in K_GRID:
        z = clarke(ref, low_adjust(pr, k)); ab[k] = z["A"] + z["B"]
        if ab[k] >= 0.99:
            return k, ab
    return max(ab, key=ab.get), ab


# ------------------------------------------------------------------ main
def main():
    P = load()
    names = list(P)
    N = 2880
    R = {"rows": {}, "lambdas": {}, "per_patient": {}, "scarce": {}}
    test_idx = {h: np.arange(TRAIN_END, N - h) for h in HORIZONS}
    truth = {(nm, h): P[nm]["cgm"][test_idx[h] + h] for nm in names for h in HORIZONS}

    def score(label, preds, lohi=None, extra=None):
        row = {}
        for h in HORIZONS:
            e = np.concatenate([preds[nm, h] - truth[nm, h] for nm in names])
            row[f"rmse{h*5}"] = rmse(e); row[f"mae{h*5}"] = mae(e)
            if lohi is not None:
                cov = [((truth[nm, h] >= lohi[nm, h][0]) & (truth[nm, h] <= lohi[nm, h][1])) for nm in names]
                row[f"cov{h*5}"] = float(np.mean(np.concatenate(cov)))
                row[f"width{h*5}"] = float(np.mean(np.concatenate([lohi[nm, h][1] - lohi[nm, h][0] for nm in names])))
                row[f"cov{h*5}_per_patient"] = [float(np.mean(c)) for c in cov]
            ref = np.concatenate([truth[nm, h] for nm in names]); pr = np.concatenate([preds[nm, h] for nm in names])
            row[f"clarke{h*5}"] = clarke(ref, pr)
            row[f"rmse{h*5}_per_patient"] = {nm: rmse(preds[nm, h] - truth[nm, h]) for nm in names}
        if extra: row.update(extra)
        R["rows"][label] = row
        return row

    # ---------------- baselines
    for label, fn in [("AR2 (Nightscout)", lambda c, t, h: ar2(c, t, h)),
                      ("last value", lambda c, t, h: c[t]),
                      ("linear extrapolation, 3 pts", lambda c, t, h: linex(c, t, h, 3)),
                      ("linear extrapolation, 4 pts", lambda c, t, h: linex(c, t, h, 4))]:
        score(label, {(nm, h): fn(P[nm]["cgm"], test_idx[h], h) for nm in names for h in HORIZONS})

    def run_family(tag, fam, do_interval=True, do_scarce=False):
        preds = {k: {} for k in ("personal", "pop", "shrink", "shrink_adj")}
        lohi = {}
        lam_info = {}
        for h in HORIZONS:
            te = test_idx[h]
            # pure personal
            lam, curve = fam.personal_lambda(h)
            # population (strict leave-one-patient-out) + personalisation toward it
            pops = fam.lopo(h)
            lam_p, curve_p = fam.shrink_lambda(pops, h)
            lam_info[h * 5] = dict(personal=lam, personal_cv=curve, pop={nm: pops[nm]["lam"] for nm in names},
                                   shrink=lam_p, shrink_cv=curve_p)
            for nm in names:
                Xte, _ = fam.data(nm, h, te); c_now = P[nm]["cgm"][te]
                Xtr, ytr = fam.data(nm, h, origins(0, TRAIN_END, h))
                mp = fam.personal(nm, h, lam)
                ms = fam.shrink(pops[nm], Xtr, ytr, lam_p)
                preds["personal"][nm, h] = np.clip(c_now + predict(mp, Xte), 40, 400)
                preds["pop"][nm, h] = np.clip(c_now + predict(pops[nm], Xte), 40, 400)
                preds["shrink"][nm, h] = np.clip(c_now + predict(ms, Xte), 40, 400)
            if do_interval:
                fres = fam.fold_residuals(
                    lambda nm, h_, a: fam.shrink(pops[nm], *fam.data(nm, h_, origins(0, a, h_)), lam_p), h)
                fnames = fam.F[names[0], h][2]
                k_low, ab = choose_k(fres) if h == 6 else (0.0, None)
                lam_info[h * 5]["low_adjust_k"] = k_low; lam_info[h * 5]["low_adjust_fold_AB"] = ab
                for nm in names:
                    preds["shrink_adj"][nm, h] = low_adjust(preds["shrink"][nm, h], k_low)
                for local in (False, True):
                    itv = Interval(fres, fnames, local)
                    for nm in names:
                        Xte, _ = fam.data(nm, h, te); c_now = P[nm]["cgm"][te]
                        ms = fam.shrink(pops[nm], *fam.data(nm, h, origins(0, TRAIN_END, h)), lam_p)
                        lohi[local, nm, h] = itv.bounds(nm, Xte, predict(ms, Xte), c_now)
                    lam_info[h * 5][f"interval_local={local}"] = dict(q=itv.q.tolist(), a=(itv.a.tolist() if local else None))
            if do_scarce:
                for days in (1, 2, 3, 5, 7):
                    for nm in names:
                        idx = origins(TRAIN_END - days * DAY, TRAIN_END, h)   # the most recent `days` of training
                        X, y = fam.data(nm, h, idx)
                        Xte, _ = fam.data(nm, h, te); c_now = P[nm]["cgm"][te]
                        preds.setdefault(f"personal only, last {days} d", {})[nm, h] = np.clip(
                            c_now + predict(ridge([X], [y], lam), Xte), 40, 400)
                        preds.setdefault(f"pop + shrink, last {days} d", {})[nm, h] = np.clip(
                            c_now + predict(fam.shrink(pops[nm], X, y, lam_p), Xte), 40, 400)
        R["lambdas"][tag] = lam_info
        score(f"{tag}: personal ridge", preds["personal"])
        score(f"{tag}: population, leave-one-patient-out", preds["pop"])
        if do_interval:
            score(f"{tag}: personalised (shrink to population), global-scale interval", preds["shrink"],
                  {(nm, h): lohi[False, nm, h] for nm in names for h in HORIZONS})
            score(f"{tag}: personalised (shrink to population)", preds["shrink"],
                  {(nm, h): lohi[True, nm, h] for nm in names for h in HORIZONS})
            score(f"{tag}: personalised + low-range safety adjustment (30 min)", preds["shrink_adj"],
                  {(nm, h): lohi[True, nm, h] for nm in names for h in HORIZONS})
        else:
            score(f"{tag}: personalised (shrink to population)", preds["shrink"])
        if do_scarce:
            for k, v in preds.items():
                if "last" in k:
                    R["scarce"][f"{tag}: {k}"] = {f"rmse{h*5}": rmse(np.concatenate([v[nm, h] - truth[nm, h] for nm in names])) for h in HORIZONS}
        return preds

    run_family("FULL", Family(P, treatments=True), do_scarce=True)
    run_family("GLUCOSE-ONLY", Family(P, treatments=False))
    run_family("FULL+time-of-day (optional)", Family(P, treatments=True, tod=True), do_interval=False)
    run_family("FULL, unscaled pooling", Family(P, treatments=True, scaled=False), do_interval=False)

    # ---------------- print
    ar = R["rows"]["AR2 (Nightscout)"]
    print(f"{'model':75s} {'RMSE30':>7s} {'/AR2':>5s} {'RMSE60':>7s} {'/AR2':>5s} {'MAE30':>6s} {'MAE60':>6s} {'cov30':>6s} {'cov60':>6s} {'w30':>5s} {'w60':>5s} {'A+B30':>6s}")
    for k, r in R["rows"].items():
        cv = lambda h: f"{r[f'cov{h}']*100:5.1f}%" if f"cov{h}" in r else "     -"
        wd = lambda h: f"{r[f'width{h}']:5.1f}" if f"width{h}" in r else "    -"
        ab = (r["clarke30"]["A"] + r["clarke30"]["B"]) * 100
        print(f"{k:75s} {r['rmse30']:7.2f} {r['rmse30']/ar['rmse30']:5.3f} {r['rmse60']:7.2f} {r['rmse60']/ar['rmse60']:5.3f} "
              f"{r['mae30']:6.2f} {r['mae60']:6.2f} {cv(30)} {cv(60)} {wd(30)} {wd(60)} {ab:6.2f}")
    print("\nscarce personal data (most recent D training days), test RMSE30 / RMSE60:")
    for k, v in R["scarce"].items():
        print(f"  {k:55s} {v['rmse30']:6.2f} {v['rmse60']:6.2f}")
    print("\nlambdas:", json.dumps({t: {h: {k: v for k, v in d.items() if not k.endswith("_cv")} for h, d in x.items()} for t, x in R["lambdas"].items()}, default=str)[:3000])
    json.dump(R, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json"), "w"), indent=1, default=str)


if __name__ == "__main__":
    main()
