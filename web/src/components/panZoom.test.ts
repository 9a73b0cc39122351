import { describe, expect, it } from "vitest";
import { panned, zoomed } from "./panZoom";

const bounds = { min: 0, max: 1000 };

describe("pan and zoom", () => {
  it("pans by a fraction of the visible width and stops at the data's ends", () => {
    expect(panned({ min: 100, max: 200 }, 0.5, bounds)).toEqual({ min: 150, max: 250 });
    expect(panned({ min: 100, max: 200 }, -5, bounds)).toEqual({ min: 0, max: 100 });
    expect(panned({ min: 800, max: 900 }, 5, bounds)).toEqual({ min: 900, max: 1000 });
  });
  it("zooms around the pointer, no narrower than the minimum and no wider than the data", () => {
    expect(zoomed({ min: 0, max: 100 }, 0.5, 50, bounds, 10)).toEqual({ min: 25, max: 75 });
    expect(zoomed({ min: 0, max: 100 }, 0.01, 0, bounds, 10)).toEqual({ min: 0, max: 10 });
    expect(zoomed({ min: 400, max: 600 }, 100, 500, bounds, 10)).toEqual({ min: 0, max: 1000 });
  });
});
