/**
 * Glucose values as people read them: units, ranges and trend arrows. Values travel in mg/dL
 * (the API's unit) and are converted only for display, so that rounding never feeds back
 * into data.
 */

/** The server's factor (crates/domain/src/units.rs). */
export const MGDL_PER_MMOLL = 18.016;

export type GlucoseUnit = "mg/dL" | "mmol/L";

/** A value in the person's unit, rounded as meters show it: whole mg/dL, mmol/L to 0.1. */
export function formatGlucose(mgdl: number, unit: GlucoseUnit): string {
  if (unit === "mmol/L") return (mgdl / MGDL_PER_MMOLL).toFixed(1);
  return Math.round(mgdl).toString();
}

export function toUnit(mgdl: number, unit: GlucoseUnit): number {
  return unit === "mmol/L" ? Math.round((mgdl / MGDL_PER_MMOLL) * 10) / 10 : Math.round(mgdl);
}

export function fromUnit(value: number, unit: GlucoseUnit): number {
  return unit === "mmol/L" ? value * MGDL_PER_MMOLL : value;
}

/**
 * What to send for a threshold typed in the person's unit: its mg/dL value if they changed
 * it, else nothing — a stored value shown rounded and sent back would drift (70 → 70.26).
 */
export function changedMgdl(typed: string, storedMgdl: number, unit: GlucoseUnit): number | undefined {
  return typed !== String(toUnit(storedMgdl, unit)) ? fromUnit(Number(typed), unit) : undefined;
}

/** A change, signed: "+12", "−0.4" (a real minus sign), "±0". */
export function formatDelta(deltaMgdl: number, unit: GlucoseUnit): string {
  const shown = formatGlucose(Math.abs(deltaMgdl), unit);
  if (Number(shown) === 0) return unit === "mmol/L" ? "±0.0" : "±0";
  return (deltaMgdl > 0 ? "+" : "\u2212") + shown;
}

/** The consensus ranges (Battelino et al. 2019) with the person's own targets. */
export type RangeBand = "urgent-low" | "low" | "in-range" | "high" | "very-high";

export interface Targets {
  urgentLow: number;
  low: number;
  high: number;
  veryHigh: number;
}

export const CONSENSUS_TARGETS: Targets = { urgentLow: 54, low: 70, high: 180, veryHigh: 250 };

export function rangeBand(mgdl: number, t: Targets = CONSENSUS_TARGETS): RangeBand {
  if (mgdl < t.urgentLow) return "urgent-low";
  if (mgdl < t.low) return "low";
  if (mgdl <= t.high) return "in-range";
  if (mgdl <= t.veryHigh) return "high";
  return "very-high";
}

/** Words for a band: colour is never the only signal. */
export const BAND_LABEL: Record<RangeBand, string> = {
  "urgent-low": "Urgent low",
  low: "Low",
  "in-range": "In range",
  high: "High",
  "very-high": "Very high",
};

export type Trend =
  | "DoubleUp"
  | "SingleUp"
  | "FortyFiveUp"
  | "Flat"
  | "FortyFiveDown"
  | "SingleDown"
  | "DoubleDown"
  | "NOT COMPUTABLE"
  | "RATE OUT OF RANGE";

/** The arrow and the words a screen reader says for it. */
export function trendArrow(trend: Trend | null | undefined): { arrow: string; label: string } {
  switch (trend) {
    case "DoubleUp":
      return { arrow: "⇈", label: "rising quickly" };
    case "SingleUp":
      return { arrow: "↑", label: "rising" };
    case "FortyFiveUp":
      return { arrow: "↗", label: "rising slowly" };
    case "Flat":
      return { arrow: "→", label: "steady" };
    case "FortyFiveDown":
      return { arrow: "↘", label: "falling slowly" };
    case "SingleDown":
      return { arrow: "↓", label: "falling" };
    case "DoubleDown":
      return { arrow: "⇊", label: "falling quickly" };
    default:
      return { arrow: "", label: "trend unknown" };
  }
}

/**
 * The trend from the last readings when the uploader sent none: the rate over the last
 * 15 minutes, in the Dexcom bands (mg/dL per minute: >3 double, 2–3 single, 1–2 forty-five).
 */
export function trendFromReadings(points: { t: number; mgdl: number }[]): Trend | null {
  if (points.length < 2) return null;
  const last = points[points.length - 1]!;
  const first = points.find((p) => p.t >= last.t - 15 * 60_000 - 30_000);
  if (!first || first === last || last.t - first.t < 4 * 60_000) return null;
  const rate = (last.mgdl - first.mgdl) / ((last.t - first.t) / 60_000);
  if (rate > 3) return "DoubleUp";
  if (rate > 2) return "SingleUp";
  if (rate > 1) return "FortyFiveUp";
  if (rate >= -1) return "Flat";
  if (rate >= -2) return "FortyFiveDown";
  if (rate >= -3) return "SingleDown";
  return "DoubleDown";
}

/** Readings older than this make the dashboard stale (Dexcom and Nightscout warn near here). */
export const STALE_AFTER_MS = 15 * 60_000;

/** "just now", "4 min ago", "2 h 5 min ago". */
export function ago(ms: number): string {
  const minutes = Math.floor(Math.max(0, ms) / 60_000);
  if (minutes < 1) return "just now";
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min ago`;
  return `${Math.floor(hours / 24)} days ago`;
}
