import { describe, expect, it } from "vitest";
import { ago, formatDelta, formatGlucose, fromUnit, rangeBand, toUnit, trendArrow, trendFromReadings } from "./glucose";

describe("units", () => {
  it("shows mg/dL whole and mmol/L to one decimal", () => {
    expect(formatGlucose(99.6, "mg/dL")).toBe("100");
    expect(formatGlucose(180, "mmol/L")).toBe("10.0");
    expect(formatGlucose(54, "mmol/L")).toBe("3.0");
  });
  it("round-trips a typed mmol/L value within display precision", () => {
    for (const mmol of [2.2, 3.9, 5.5, 10.0, 13.9, 27.8]) {
      expect(toUnit(fromUnit(mmol, "mmol/L"), "mmol/L")).toBeCloseTo(mmol, 5);
    }
  });
  it("signs deltas with a real minus and shows no change as ±0", () => {
    expect(formatDelta(12, "mg/dL")).toBe("+12");
    expect(formatDelta(-7.2, "mmol/L")).toBe("\u22120.4");
    expect(formatDelta(0.3, "mg/dL")).toBe("±0");
    expect(formatDelta(0.2, "mmol/L")).toBe("±0.0");
  });
});

describe("ranges", () => {
  it("puts the consensus edges where the consensus does", () => {
    expect(rangeBand(53.9)).toBe("urgent-low");
    expect(rangeBand(54)).toBe("low");
    expect(rangeBand(70)).toBe("in-range");
    expect(rangeBand(180)).toBe("in-range");
    expect(rangeBand(181)).toBe("high");
    expect(rangeBand(250)).toBe("high");
    expect(rangeBand(251)).toBe("very-high");
  });
  it("uses the person's own targets", () => {
    expect(rangeBand(75, { urgentLow: 55, low: 80, high: 160, veryHigh: 250 })).toBe("low");
    expect(rangeBand(170, { urgentLow: 55, low: 80, high: 160, veryHigh: 250 })).toBe("high");
  });
});

describe("trend", () => {
  it("has words for every arrow", () => {
    expect(trendArrow("SingleDown")).toEqual({ arrow: "↓", label: "falling" });
    expect(trendArrow(null).label).toBe("trend unknown");
  });
  it("derives the Dexcom bands from the last 15 minutes", () => {
    const t0 = 1_700_000_000_000;
    const series = (rate: number) => [0, 5, 10, 15].map((m) => ({ t: t0 + m * 60_000, mgdl: 120 + rate * m }));
    expect(trendFromReadings(series(0))).toBe("Flat");
    expect(trendFromReadings(series(1.5))).toBe("FortyFiveUp");
    expect(trendFromReadings(series(-2.5))).toBe("SingleDown");
    expect(trendFromReadings(series(-4))).toBe("DoubleDown");
    expect(trendFromReadings(series(0).slice(0, 1))).toBeNull();
  });
});

describe("ago", () => {
  it("speaks in minutes, then hours", () => {
    expect(ago(20_000)).toBe("just now");
    expect(ago(4 * 60_000 + 59_000)).toBe("4 min ago");
    expect(ago(125 * 60_000)).toBe("2 h 5 min ago");
  });
});
