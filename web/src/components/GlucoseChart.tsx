/**
 * The glucose chart: readings as a line with the target band behind it, the forecast as a
 * dashed line inside its 80 % interval (a cone), and treatments as labelled markers. Drawn
 * with uPlot on a canvas: tens of thousands of points (90 days of 5-minute data) stay smooth
 * when panned.
 */
import { useEffect, useRef } from "react";
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

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

export function GlucoseChart(props: GlucoseChartProps) {
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
    const data: uPlot.AlignedData = [
      cols.x,
      cols.glucose.map(conv),
      cols.forecast.map(conv),
      cols.lower.map(conv),
      cols.upper.map(conv),
    ];
    const line = cssVar("--chart-line", "#0b6e69");
    const fc = cssVar("--chart-forecast", "#6b4fbb");
    const band = cssVar("--chart-band", "rgba(11,110,105,0.12)");
    const axis = cssVar("--text-muted", "#555");
    const grid = cssVar("--chart-grid", "rgba(0,0,0,0.08)");
    const markInsulin = cssVar("--mark-insulin", "#1f5fbf");
    const markCarbs = cssVar("--mark-carbs", "#9a5b00");
    const yMax = Math.max(unit === "mmol/L" ? 16.7 : 300, ...(data[1] as (number | null)[]).filter((v): v is number => v != null));
    const opts: uPlot.Options = {
      width: el.clientWidth || 320,
      height,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      plugins: props.pannable ? [panZoomPlugin(() => ({ min: from / 1000, max: to / 1000 }), 3600)] : [],
      scales: {
        x: { time: true, min: from / 1000, max: to / 1000 },
        y: { range: [unit === "mmol/L" ? 2 : 40, yMax] },
      },
      axes: [
        { stroke: axis, grid: { stroke: grid } },
        { stroke: axis, grid: { stroke: grid }, size: 44 },
      ],
      series: [
        {},
        { label: "Glucose", stroke: line, width: 2, points: { show: readings.length < 400, size: 4, fill: line } },
        { label: "Forecast", stroke: fc, width: 2, dash: [6, 4], points: { show: false } },
        { label: "Forecast low", stroke: "transparent", points: { show: false } },
        { label: "Forecast high", stroke: "transparent", points: { show: false } },
      ],
      bands: [{ series: [4, 3], fill: cssVar("--chart-cone", "rgba(107,79,187,0.18)") }],
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
              const insulin = m.kind === "insulin";
              const y = insulin ? u.bbox.top + u.bbox.height - 14 * devicePixelRatio : u.bbox.top + 14 * devicePixelRatio;
              ctx.fillStyle = insulin ? markInsulin : markCarbs;
              ctx.beginPath();
              // Insulin: a triangle pointing down; carbs and others: a circle.
              if (insulin) {
                const s = 5 * devicePixelRatio;
                ctx.moveTo(x - s, y - s);
                ctx.lineTo(x + s, y - s);
                ctx.lineTo(x, y + s);
                ctx.closePath();
              } else {
                ctx.arc(x, y, 5 * devicePixelRatio, 0, Math.PI * 2);
              }
              ctx.fill();
              ctx.fillText(m.label, x, insulin ? y - 9 * devicePixelRatio : y + 18 * devicePixelRatio);
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
  }, [props.readings, props.forecast, props.treatments, props.from, props.to, props.unit, props.targets.low, props.targets.high, props.height, props.pannable]);

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
      </figcaption>
    </figure>
  );
}
