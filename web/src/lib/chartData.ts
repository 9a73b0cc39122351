/**
 * Shaping API data into the column arrays uPlot draws (x in seconds, one array per series,
 * `null` where a line must break). Kept free of the DOM so it can be tested and so that
 * 90 days of 5-minute readings (~26,000 points) are shaped in one linear pass.
 */

import type { GlucoseUnit } from "./glucose";

export interface GlucosePoint {
  /** Epoch milliseconds. */
  t: number;
  mgdl: number;
}

export interface ForecastPoint {
  t: number;
  mgdl: number;
  lower: number;
  upper: number;
}

/** A line is broken where readings are further apart than this (a sensor gap). */
export const GAP_MS = 15 * 60_000;

export interface GlucoseColumns {
  /** Seconds since the epoch, ascending. */
  x: number[];
  glucose: (number | null)[];
  forecast: (number | null)[];
  lower: (number | null)[];
  upper: (number | null)[];
}

/**
 * Readings (any order, duplicates allowed) and an optional forecast into aligned columns.
 * Readings outside `[from, to]` are dropped; a `null` is inserted into every gap longer than
 * `GAP_MS` so that uPlot does not draw a line across it. The forecast starts at the last
 * reading (so its cone opens from the line) and is kept only if it is newer than that reading.
 */
export function glucoseColumns(
  readings: GlucosePoint[],
  forecast: ForecastPoint[] | null,
  from: number,
  to: number,
): GlucoseColumns {
  const sorted = readings.filter((r) => r.t >= from && r.t <= to).sort((a, b) => a.t - b.t);
  const cols: GlucoseColumns = { x: [], glucose: [], forecast: [], lower: [], upper: [] };
  const push = (t: number, g: number | null, f: number | null, lo: number | null, hi: number | null) => {
    cols.x.push(t / 1000);
    cols.glucose.push(g);
    cols.forecast.push(f);
    cols.lower.push(lo);
    cols.upper.push(hi);
  };
  let prev: GlucosePoint | undefined;
  for (const r of sorted) {
    if (prev && r.t === prev.t) continue;
    if (prev && r.t - prev.t > GAP_MS) push((prev.t + r.t) / 2, null, null, null, null);
    push(r.t, r.mgdl, null, null, null);
    prev = r;
  }
  const last = prev;
  if (forecast && forecast.length > 0 && last) {
    const ahead = forecast.filter((p) => p.t > last.t).sort((a, b) => a.t - b.t);
    if (ahead.length > 0) {
      // The cone opens at the last reading.
      const i = cols.x.length - 1;
      cols.forecast[i] = last.mgdl;
      cols.lower[i] = last.mgdl;
      cols.upper[i] = last.mgdl;
      for (const p of ahead) push(p.t, null, p.mgdl, p.lower, p.upper);
    }
  }
  return cols;
}

export interface TreatmentMark {
  t: number;
  kind: "insulin" | "carbs" | "exercise" | "note" | "basal_rate";
  label: string;
}

/** A short label for a treatment marker: "4.5 U", "30 g", "20 min", "note". */
export function treatmentLabel(t: {
  kind: string;
  units?: number | null;
  grams?: number | null;
  minutes?: number | null;
  units_per_hour?: number | null;
}): string {
  switch (t.kind) {
    case "insulin":
      return `${trimNumber(t.units ?? 0)} U`;
    case "carbs":
      return `${trimNumber(t.grams ?? 0)} g`;
    case "exercise":
      return `${trimNumber(t.minutes ?? 0)} min`;
    case "basal_rate":
      return `${trimNumber(t.units_per_hour ?? 0)} U/h`;
    default:
      return "note";
  }
}

function trimNumber(n: number): string {
  return Number.isInteger(n) ? n.toString() : n.toFixed(1).replace(/\.0$/, "");
}

/** The AGP's percentile bands as columns over one day (x = seconds from local midnight). */
export function agpColumns(bins: { time: string; p5?: number | null; p25?: number | null; p50?: number | null; p75?: number | null; p95?: number | null }[]) {
  const x: number[] = [];
  const p: (number | null)[][] = [[], [], [], [], []];
  for (const b of bins) {
    const [h, m] = b.time.split(":").map(Number);
    x.push((h ?? 0) * 3600 + (m ?? 0) * 60);
    [b.p5, b.p25, b.p50, b.p75, b.p95].forEach((v, i) => p[i]!.push(v ?? null));
  }
  return { x, p5: p[0]!, p25: p[1]!, p50: p[2]!, p75: p[3]!, p95: p[4]! };
}

/**
 * Time-in-range segments for a stacked bar, from the summary's percentages. The five
 * consensus ranges always sum to 100 (the in-range share absorbs rounding), so the bar is
 * always full and the labels agree with the API's `tir`.
 */
export function tirSegments(
  s: { tbr_54?: number | null; tbr_70?: number | null; tir?: number | null; tar_180?: number | null; tar_250?: number | null },
  unit: GlucoseUnit = "mg/dL",
) {
  const mmol = unit === "mmol/L";
  const veryLow = s.tbr_54 ?? 0;
  const round1 = (n: number) => Math.round(n * 10) / 10;
  const low = Math.max(0, round1((s.tbr_70 ?? 0) - veryLow));
  const veryHigh = s.tar_250 ?? 0;
  const high = Math.max(0, round1((s.tar_180 ?? 0) - veryHigh));
  const inRange = s.tir ?? Math.max(0, 100 - veryLow - low - high - veryHigh);
  return [
    { key: "very-high", label: `Very high (>${mmol ? "13.9" : "250"})`, percent: veryHigh, target: "<5%" },
    { key: "high", label: `High (${mmol ? "10.1–13.9" : "181–250"})`, percent: high, target: "<25% incl. very high" },
    { key: "in-range", label: `In range (${mmol ? "3.9–10.0" : "70–180"})`, percent: inRange, target: ">70%" },
    { key: "low", label: `Low (${mmol ? "3.0–3.8" : "54–69"})`, percent: low, target: "<4% incl. very low" },
    { key: "very-low", label: `Very low (<${mmol ? "3.0" : "54"})`, percent: veryLow, target: "<1%" },
  ] as const;
}
