/**
 * The glucose chart: readings as a line with the target band behind it, the forecast as a
 * dashed line inside its 80 % interval (a cone), and treatments as labelled markers. Drawn
 * with uPlot on a canvas: tens of thousands of points (90 days of 5-minute data) stay smooth
 * when panned.
 */
import { useEffect, useRef, useState } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { glucoseColumns, type ForecastPoint, type GlucosePoint, type TreatmentMark } from "../lib/chartData";
import { toUnit, type GlucoseUnit, type Targets } from "../lib/glucose";
import { panned, panZoomPlugin, zoomed } from "./panZoom";

export interface GlucoseChartProps {
  readings: GlucosePoint[];
  forecast: ForecastPoint[] | null;
  treatments: TreatmentMark[];
  from: number;
  to: number;
  unit: GlucoseUnit;
  targets: Targets;
  /** Accessible summary of what the chart shows. */
  label: string;
  height?: number;
  /** Drag to pan (the reports' long views); the dashboard's short views stay fixed. */
  pannable?: boolean;
}

/** "dark" or "light", following the system setting as it changes: charts read their colours from CSS. */
export function useColorScheme(): "dark" | "light" {
  const query = typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null;
  const [dark, setDark] = useState(query?.matches ?? false);
  useEffect(() => {
    if (!query) return;
    const on = (e: MediaQueryListEvent) => setDark(e.matches);
    query.addEventListener("change", on);
    return () => query.removeEventListener("change", on);
  }, [query]);
  return dark ? "dark" : "light";
}

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

export function GlucoseChart(props: GlucoseChartProps) {
  const scheme = useColorScheme();
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latest = useRef(props);
  latest.current = props;

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const { readings, forecast, from, to, unit, height = 260 } = props;
    const cols = glucoseColumns(readings, forecast, from, to);
    const conv = (v: number | null) => (v == null ? null : toUnit(v, unit));
    // Without a forecast its three series are left out: all-null columns still cost a pass
    // over every point at each redraw (26,000 points over 90 days).
    const withForecast = cols.forecast.some((v) => v != null);
    const data: uPlot.AlignedData = withForecast
      ? [cols.x, cols.glucose.map(conv), cols.forecast.map(conv), cols.lower.map(conv), cols.upper.map(conv)]
      : [cols.x, cols.glucose.map(conv)];
    const line = cssVar("--chart-line", "#0b6e69");
    const fc = cssVar("--chart-forecast", "#6b4fbb");
    const band = cssVar("--chart-band", "rgba(11,110,105,0.12)");
    const axis = cssVar("--text-muted", "#555");
    const grid = cssVar("--chart-grid", "rgba(0,0,0,0.08)");
    const markInsulin = cssVar("--mark-insulin", "#1f5fbf");
    const markCarbs = cssVar("--mark-carbs", "#9a5b00");
    const markExercise = cssVar("--mark-exercise", "#1d6b2f");
    const markNote = cssVar("--text-muted", "#4a5a5d");
    // The axis reaches every value drawn: a 25 mg/dL low or a forecast's upper bound is never
    // clipped.
    let lo = unit === "mmol/L" ? 2.2 : 40;
    let hi = unit === "mmol/L" ? 16.7 : 300;
    for (const column of data.slice(1) as (number | null)[][]) {
      for (const v of column) {
        if (v == null) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    const yMin = unit === "mmol/L" ? Math.floor(lo) : Math.floor(lo / 10) * 10;
    const yMax = hi;
    const opts: uPlot.Options = {
      width: el.clientWidth || 320,
      height,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      plugins: props.pannable ? [panZoomPlugin(() => ({ min: from / 1000, max: to / 1000 }), 3600)] : [],
      scales: {
        x: { time: true, min: from / 1000, max: to / 1000 },
        y: { range: [yMin, yMax] },
      },
      axes: [
        { stroke: axis, grid: { stroke: grid } },
        { stroke: axis, grid: { stroke: grid }, size: 44 },
      ],
      series: [
        {},
        { label: "Glucose", stroke: line, width: 2, points: { show: readings.length < 400, size: 4, fill: line } },
        ...(withForecast
          ? [
              { label: "Forecast", stroke: fc, width: 2, dash: [6, 4], points: { show: false } },
              { label: "Forecast low", stroke: "transparent", points: { show: false } },
              { label: "Forecast high", stroke: "transparent", points: { show: false } },
            ]
          : []),
      ],
      bands: withForecast ? [{ series: [4, 3], fill: cssVar("--chart-cone", "rgba(107,79,187,0.18)") }] : [],
      hooks: {
        drawClear: [
          (u) => {
            // The target band behind everything.
            const { low, high } = latest.current.targets;
            const top = u.valToPos(toUnit(high, unit), "y", true);
            const bottom = u.valToPos(toUnit(low, unit), "y", true);
            const ctx = u.ctx;
            ctx.save();
            ctx.fillStyle = band;
            ctx.fillRect(u.bbox.left, top, u.bbox.width, bottom - top);
            ctx.restore();
          },
        ],
        draw: [
          (u) => {
            const ctx = u.ctx;
            ctx.save();
            ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
            ctx.textAlign = "center";
            for (const m of latest.current.treatments) {
              const x = u.valToPos(m.t / 1000, "x", true);
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              const s = 5 * devicePixelRatio;
              // Insulin: a triangle pointing down at the bottom; carbs: a circle at the top;
              // exercise: a square, notes: a diamond, both at the top. Shape and label, never
              // colour alone.
              const bottom = m.kind === "insulin";
              const y = bottom ? u.bbox.top + u.bbox.height - 14 * devicePixelRatio : u.bbox.top + 14 * devicePixelRatio;
              ctx.fillStyle = { insulin: markInsulin, carbs: markCarbs, exercise: markExercise, note: markNote, basal_rate: markInsulin }[m.kind];
              ctx.beginPath();
              if (m.kind === "insulin") {
                ctx.moveTo(x - s, y - s);
                ctx.lineTo(x + s, y - s);
                ctx.lineTo(x, y + s);
                ctx.closePath();
              } else if (m.kind === "exercise") {
                ctx.rect(x - s, y - s, 2 * s, 2 * s);
              } else if (m.kind === "note") {
                ctx.moveTo(x, y - s);
                ctx.lineTo(x + s, y);
                ctx.lineTo(x, y + s);
                ctx.lineTo(x - s, y);
                ctx.closePath();
              } else {
                ctx.arc(x, y, s, 0, Math.PI * 2);
              }
              ctx.fill();
              ctx.fillText(m.label, x, bottom ? y - 9 * devicePixelRatio : y + 18 * devicePixelRatio);
            }
            ctx.restore();
          },
        ],
      },
    };
    plot.current?.destroy();
    plot.current = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: el.clientWidth || 320, height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // from/to are left out on purpose: the dashboard's window moves with the clock, and that
    // is a scale change (below), not a new chart.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.readings, props.forecast, props.treatments, props.unit, props.targets.low, props.targets.high, props.height, props.pannable, scheme]);

  useEffect(() => {
    if (!props.pannable) plot.current?.setScale("x", { min: props.from / 1000, max: props.to / 1000 });
  }, [props.from, props.to, props.pannable]);

  /** Keyboard (and button) control of a pannable chart: the same moves as dragging and the wheel. */
  const move = (kind: "earlier" | "later" | "in" | "out") => {
    const u = plot.current;
    if (!u) return;
    const range = { min: u.scales.x!.min!, max: u.scales.x!.max! };
    const bounds = { min: props.from / 1000, max: props.to / 1000 };
    const middle = (range.min + range.max) / 2;
    const next =
      kind === "earlier"
        ? panned(range, -0.5, bounds)
        : kind === "later"
          ? panned(range, 0.5, bounds)
          : zoomed(range, kind === "in" ? 0.5 : 2, middle, bounds, 3600);
    u.setScale("x", next);
  };

  return (
    <figure className="chart">
      {props.pannable && (
        <div className="chart-controls" role="group" aria-label="Move the chart">
          <button type="button" onClick={() => move("earlier")}>
            ← Earlier
          </button>
          <button type="button" onClick={() => move("later")}>
            Later →
          </button>
          <button type="button" onClick={() => move("in")}>
            Zoom in
          </button>
          <button type="button" onClick={() => move("out")}>
            Zoom out
          </button>
          <span className="hint">or drag the chart, and zoom with the mouse wheel</span>
        </div>
      )}
      <div ref={host} className="chart-canvas" role="img" aria-label={props.label} data-testid={props.pannable ? "history-chart" : "glucose-chart"}
        data-points={props.readings.length}
      />
      <figcaption className="chart-legend">
        <span className="legend-line">Glucose</span>
        <span className="legend-band">Target range</span>
        <span className="legend-forecast">Forecast (80 % range)</span>
        <span className="legend-insulin">▼ insulin</span>
        <span className="legend-carbs">● carbs</span>
        <span className="legend-exercise">■ exercise</span>
        <span className="legend-note">◆ note</span>
      </figcaption>
    </figure>
  );
}
