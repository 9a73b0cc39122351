import { describe, expect, it } from "vitest";
import { agpColumns, GAP_MS, glucoseColumns, tirSegments, treatmentLabel } from "./chartData";

const T0 = 1_700_000_000_000;
const at = (min: number) => T0 + min * 60_000;

describe("glucoseColumns", () => {
  it("sorts, drops duplicates and readings outside the window", () => {
    const cols = glucoseColumns(
      [
        { t: at(10), mgdl: 110 },
        { t: at(0), mgdl: 100 },
        { t: at(5), mgdl: 105 },
        { t: at(5), mgdl: 105 },
        { t: at(-60), mgdl: 90 },
      ],
      null,
      at(0),
      at(30),
    );
    expect(cols.x).toEqual([at(0) / 1000, at(5) / 1000, at(10) / 1000]);
    expect(cols.glucose).toEqual([100, 105, 110]);
  });

  it("breaks the line across a sensor gap", () => {
    const cols = glucoseColumns([{ t: at(0), mgdl: 100 }, { t: at(0) + GAP_MS + 60_000, mgdl: 120 }], null, at(0), at(60));
    expect(cols.glucose).toEqual([100, null, 120]);
    expect(cols.x).toHaveLength(3);
  });

  it("opens the forecast cone at the last reading and keeps only points ahead of it", () => {
    const cols = glucoseColumns(
      [{ t: at(0), mgdl: 100 }, { t: at(5), mgdl: 104 }],
      [
        { t: at(5), mgdl: 999, lower: 999, upper: 999 },
        { t: at(10), mgdl: 108, lower: 100, upper: 116 },
        { t: at(15), mgdl: 112, lower: 98, upper: 126 },
      ],
      at(0),
      at(60),
    );
    expect(cols.glucose).toEqual([100, 104, null, null]);
    expect(cols.forecast).toEqual([null, 104, 108, 112]);
    expect(cols.lower).toEqual([null, 104, 100, 98]);
    expect(cols.upper).toEqual([null, 104, 116, 126]);
  });

  it("shapes 90 days of 5-minute readings in one pass", () => {
    const n = 90 * 288;
    const readings = Array.from({ length: n }, (_, i) => ({ t: at(i * 5), mgdl: 120 + 40 * Math.sin(i / 30) }));
    const cols = glucoseColumns(readings, null, at(0), at(n * 5));
    expect(cols.x).toHaveLength(n);
    expect(cols.glucose.every((v) => v !== null)).toBe(true);
  });
});

describe("tirSegments", () => {
  it("splits the cumulative consensus figures into five bands summing to 100", () => {
    const segs = tirSegments({ tbr_54: 1.2, tbr_70: 4.5, tir: 70.3, tar_180: 25.2, tar_250: 6.1 });
    const byKey = Object.fromEntries(segs.map((s) => [s.key, s.percent]));
    expect(byKey).toEqual({ "very-low": 1.2, low: 3.3, "in-range": 70.3, high: 19.1, "very-high": 6.1 });
    expect(segs.reduce((a, s) => a + s.percent, 0)).toBeCloseTo(100, 5);
  });
});

describe("labels", () => {
  it("labels treatments briefly", () => {
    expect(treatmentLabel({ kind: "insulin", units: 4.5 })).toBe("4.5 U");
    expect(treatmentLabel({ kind: "carbs", grams: 30 })).toBe("30 g");
    expect(treatmentLabel({ kind: "exercise", minutes: 45 })).toBe("45 min");
    expect(treatmentLabel({ kind: "note" })).toBe("note");
  });
  it("puts AGP bins at their time of day", () => {
    const c = agpColumns([
      { time: "00:00", p5: 60, p25: 80, p50: 100, p75: 130, p95: 180 },
      { time: "13:35", p50: null },
    ]);
    expect(c.x).toEqual([0, 13 * 3600 + 35 * 60]);
    expect(c.p50).toEqual([100, null]);
  });
});
