/** Headless Chromium for the dashboard tests, driven by puppeteer-core (it downloads no browser). */
import puppeteer, { type Browser } from "puppeteer-core";

export const CHROMIUM = Deno.env.get("KLYM_CHROMIUM") ?? "/usr/bin/chromium";

/** Screenshots for the README are written to docs/ when KLYM_SCREENSHOTS=1. */
export const SCREENSHOTS = Deno.env.get("KLYM_SCREENSHOTS") === "1";
export const DOCS = new URL("../../docs/", import.meta.url).pathname;

export async function launchBrowser(): Promise<Browser & AsyncDisposable> {
  try {
    Deno.statSync(CHROMIUM);
  } catch {
    throw new Error(
      `No Chromium at ${CHROMIUM}: the dashboard tests need it. Install it with ` +
        `"apt-get update && apt-get install -y chromium" (deno task test does this when run as ` +
        `root), or point KLYM_CHROMIUM at a Chromium binary`,
    );
  }
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
    protocolTimeout: 60_000,
  });
  return Object.assign(browser, {
    async [Symbol.asyncDispose]() {
      await browser.close();
    },
  });
}
