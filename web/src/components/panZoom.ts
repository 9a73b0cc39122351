/**
 * Panning and zooming a uPlot time axis: drag to pan, wheel (or pinch-zoom gesture) to zoom
 * around the pointer, and the same from the keyboard through `step`/`zoom` (buttons beside the
 * chart). Bounded by the data's extent so one cannot pan into empty centuries.
 */
import type uPlot from "uplot";

export interface Extent {
  min: number;
  max: number;
}

/** The new x range after shifting by `fraction` of its width (negative: earlier), kept inside `bounds`. */
export function panned(range: Extent, fraction: number, bounds: Extent): Extent {
  const width = range.max - range.min;
  let min = range.min + fraction * width;
  min = Math.min(Math.max(min, bounds.min), bounds.max - width);
  return { min, max: min + width };
}

/** The new x range after zooming by `factor` (<1 in, >1 out) around `at`, at least `minWidth` wide. */
export function zoomed(range: Extent, factor: number, at: number, bounds: Extent, minWidth: number): Extent {
  const width = Math.min(bounds.max - bounds.min, Math.max(minWidth, (range.max - range.min) * factor));
  const left = (at - range.min) / (range.max - range.min);
  let min = at - left * width;
  min = Math.min(Math.max(min, bounds.min), bounds.max - width);
  return { min, max: min + width };
}

/** A uPlot plugin: drag to pan, wheel to zoom the x scale within `bounds()`. */
export function panZoomPlugin(bounds: () => Extent, minWidth: number): uPlot.Plugin {
  return {
    hooks: {
      ready: (u) => {
        const over = u.over;
        let dragging: { x: number; range: Extent } | null = null;
        const range = (): Extent => ({ min: u.scales.x!.min!, max: u.scales.x!.max! });
        over.addEventListener("pointerdown", (e) => {
          if (e.button !== 0) return;
          dragging = { x: e.clientX, range: range() };
          over.setPointerCapture(e.pointerId);
        });
        over.addEventListener("pointermove", (e) => {
          if (!dragging) return;
          const width = over.getBoundingClientRect().width || 1;
          const next = panned(dragging.range, -(e.clientX - dragging.x) / width, bounds());
          u.setScale("x", next);
        });
        const stop = () => {
          dragging = null;
        };
        over.addEventListener("pointerup", stop);
        over.addEventListener("pointercancel", stop);
        over.addEventListener(
          "wheel",
          (e) => {
            e.preventDefault();
            const rect = over.getBoundingClientRect();
            const at = u.posToVal(e.clientX - rect.left, "x");
            u.setScale("x", zoomed(range(), e.deltaY < 0 ? 0.8 : 1.25, at, bounds(), minWidth));
          },
          { passive: false },
        );
      },
    },
  };
}
