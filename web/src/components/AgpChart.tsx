/**
 * The Ambulatory Glucose Profile: the median with the 25–75 % and 5–95 % bands over one
 * day, as in the consensus AGP report; or, as a daily overlay, each day's curve.
 */
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Schemas } from "../api/client";
import { agpColumns } from "../lib/chartData";
import { useColorScheme } from "./GlucoseChart";
import { toUnit, type GlucoseUnit, type Targets } from "../lib/glucose";

function css(name: string, fallback: string) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

function dayAxis(): uPlot.Axis {
  return {
    stroke: css("--text-muted", "#555"),
    grid: { stroke: css("--chart-grid", "rgba(0,0,0,.08)") },
    values: (_u, splits) => splits.map((s) => `${String(Math.floor(s / 3600) % 24).padStart(2, "0")}:00`),
    splits: () => [0, 3, 6, 9, 12, 15, 18, 21, 24].map((h) => h * 3600),
  };
}

function targetBand(targets: Targets, unit: GlucoseUnit) {
  return (u: uPlot) => {
    const top = u.valToPos(toUnit(targets.high, unit), "y", true);
    const bottom = u.valToPos(toUnit(targets.low, unit), "y", true);
    u.ctx.save();
    u.ctx.fillStyle = css("--chart-band", "rgba(11,110,105,.12)");
    u.ctx.fillRect(u.bbox.left, top, u.bbox.width, bottom - top);
    u.ctx.restore();
  };
}

/** The y range: the usual 40–400 mg/dL, widened to include every value (a 25 mg/dL low shows). */
function yRange(unit: GlucoseUnit, columns: (number | null)[][]): [number, number] {
  let lo = unit === "mmol/L" ? 2.2 : 40;
  let hi = unit === "mmol/L" ? 22.2 : 400;
  for (const c of columns) for (const v of c) if (v != null) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  return [Math.floor(lo), Math.ceil(hi)];
}

function usePlot(build: (width: number) => { opts: uPlot.Options; data: uPlot.AlignedData }, deps: unknown[]) {
  const host = useRef<HTMLDivElement>(null);
  const scheme = useColorScheme();
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const { opts, data } = build(el.clientWidth || 320);
    const plot = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: el.clientWidth || 320, height: opts.height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, scheme]);
  return host;
}

export function AgpChart({ report, unit, targets }: { report: Schemas["AgpReport"]; unit: GlucoseUnit; targets: Targets }) {
  const host = usePlot(
    (width) => {
      const c = agpColumns(report.bins);
      const conv = (a: (number | null)[]) => a.map((v) => (v == null ? null : toUnit(v, unit)));
      const line = css("--chart-line", "#0b6e69");
      const columns = [conv(c.p5), conv(c.p25), conv(c.p50), conv(c.p75), conv(c.p95)];
      return {
        data: [c.x, ...columns],
        opts: {
          width,
          height: 280,
          legend: { show: false },
          cursor: { show: false },
          scales: { x: { time: false, min: 0, max: 86_400 }, y: { range: yRange(unit, columns) } },
          axes: [dayAxis(), { stroke: css("--text-muted", "#555"), grid: { stroke: css("--chart-grid", "rgba(0,0,0,.08)") }, size: 44 }],
          series: [
            {},
            { label: "5th percentile", stroke: line, width: 1, dash: [4, 4] },
            { label: "25th percentile", stroke: "transparent" },
            { label: "Median", stroke: line, width: 2.5 },
            { label: "75th percentile", stroke: "transparent" },
            { label: "95th percentile", stroke: line, width: 1, dash: [4, 4] },
          ],
          bands: [
            { series: [5, 1], fill: css("--agp-outer", "rgba(11,110,105,.12)") },
            { series: [4, 2], fill: css("--agp-inner", "rgba(11,110,105,.3)") },
          ],
          hooks: { drawClear: [targetBand(targets, unit)] },
        },
      };
    },
    [report, unit, targets.low, targets.high],
  );
  return (
    <figure className="chart">
      <div
        ref={host}
        role="img"
        aria-label={`Ambulatory glucose profile over ${report.days.length} days: median, 25th to 75th and 5th to 95th percentile bands by time of day.`}
        data-testid="agp-chart"
      />
      <figcaption className="chart-legend">
        <span className="legend-line">Median</span>
        <span className="legend-agp-inner">25–75 %</span>
        <span className="legend-agp-outer">5–95 %</span>
        <span className="legend-band">Target range</span>
      </figcaption>
    </figure>
  );
}

export function DailyOverlay({ days, unit, targets }: { days: Schemas["DayProfile"][]; unit: GlucoseUnit; targets: Targets }) {
  const host = usePlot(
    (width) => {
      // One x column of 5-minute slots; each day a series with nulls where it has no reading.
      const x = Array.from({ length: 288 }, (_, i) => i * 300);
      const series = days.map((d) => {
        const col: (number | null)[] = new Array(288).fill(null);
        d.minutes.forEach((m, i) => {
          col[Math.min(287, Math.floor(m / 5))] = toUnit(d.values[i]!, unit);
        });
        return col;
      });
      const stroke = css("--chart-overlay", "rgba(11,110,105,.35)");
      return {
        data: [x, ...series],
        opts: {
          width,
          height: 240,
          legend: { show: false },
          cursor: { show: false },
          scales: { x: { time: false, min: 0, max: 86_400 }, y: { range: yRange(unit, series) } },
          axes: [dayAxis(), { stroke: css("--text-muted", "#555"), grid: { stroke: css("--chart-grid", "rgba(0,0,0,.08)") }, size: 44 }],
          series: [{}, ...days.map((d) => ({ label: d.date, stroke, width: 1, points: { show: false } }))],
          hooks: { drawClear: [targetBand(targets, unit)] },
        },
      };
    },
    [days, unit, targets.low, targets.high],
  );
  return (
    <figure className="chart">
      <div ref={host} role="img" aria-label={`Each of ${days.length} days' glucose curves laid over one another by time of day.`} data-testid="overlay-chart" />
    </figure>
  );
}
