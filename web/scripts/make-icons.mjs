// Renders the app's PNG icons from public/icons/icon.svg with the machine's Chromium
// (run by hand when the icon changes; the PNGs are committed):
//   node scripts/make-icons.mjs
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const svg = readFileSync(new URL("../public/icons/icon.svg", import.meta.url), "utf8");
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const page = await browser.newPage();
// Plain icons: the drop on a transparent background. Maskable: a full-bleed background with
// the drop inside the 80 % safe zone, so any mask shape keeps it whole.
const variants = [
  { file: "icon-192.png", size: 192, maskable: false },
  { file: "icon-512.png", size: 512, maskable: false },
  { file: "maskable-512.png", size: 512, maskable: true },
];
for (const v of variants) {
  await page.setViewportSize({ width: v.size, height: v.size });
  const inner = v.maskable ? Math.round(v.size * 0.62) : v.size;
  const background = v.maskable ? "#e6f4f2" : "transparent";
  await page.setContent(
    `<html><body style="margin:0;display:grid;place-items:center;width:${v.size}px;height:${v.size}px;background:${background}">` +
      svg.replace('width="64" height="64"', `width="${inner}" height="${inner}"`) +
      `</body></html>`,
  );
  await page.screenshot({ path: new URL(`../public/icons/${v.file}`, import.meta.url).pathname, omitBackground: !v.maskable });
}
await browser.close();
