// Debian's Chromium, headless, through playwright-core: what both softphone scripts launch, and how they wait.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

export const WAIT = { timeout: 60_000 };
// No GPU, no sandbox (containers), and nothing that reaches the network on its own: this machine has none.
export const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** The softphone page's URL (and the rest of the arguments), or exit 2 with the usage line. */
export function argsOrUsage(script, extra = "") {
  const args = process.argv.slice(2);
  if (!args[0]) {
    console.error(`usage: node ${script} SOFTPHONE_URL${extra}`);
    process.exit(2);
  }
  return args;
}

export function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ARGS });
}
