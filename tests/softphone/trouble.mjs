// The softphone page when things go wrong, in headless Chromium (Debian's) driven by playwright-core.
// tests/test_softphone_browser.py runs it against `python -m simulator serve`:
//
//     node tests/softphone/trouble.mjs http://127.0.0.1:8090/softphone/
//
// 1. A call the simulator does not know (the dial's answer is swapped for one naming no call): its event stream
//    answers 404, and the page must say so, not "Calling…" forever.
// 2. A simulator that stops answering (every request about the call fails as when nothing listens): the page's
//    EventSource retries by itself; after a few failures the page must stop and say so.
// 3. A real call whose main menu's audio is held back, so the key that barges in pauses a play() that has not
//    begun (the browser rejects it with AbortError): that is no error to show.
// 4. Then it prints `STOP <call id>`: the test stops serve (SIGTERM), whose last event says the call did not end,
//    and the page must say the simulator stopped and disable the keypad.
// Prints what the page showed, as JSON, last; exits 1 with the reason when the page did not show what it should.
import { WAIT, argsOrUsage, launch } from "./chromium.mjs";

const [url] = argsOrUsage("trouble.mjs", "");
const browser = await launch();
const errors = [];
let page;
try {
  page = await browser.newPage();
  page.on("pageerror", (error) => errors.push(String(error)));
  const streams = {};
  page.on("request", (request) => {
    const found = request.url().match(/\/softphone\/calls\/([^/]+)\/events$/);
    if (found) streams[found[1]] = (streams[found[1]] || 0) + 1;
  });
  await page.goto(url);
  await page.locator("body[data-ready=true]").waitFor(WAIT);
  const keypad = page.getByRole("group", { name: "Keypad" });
  const callButton = page.getByRole("button", { name: "Call", exact: true });
  const shown = async () => ({
    status: await page.getByRole("status").textContent(),
    state: await page.getByRole("status").getAttribute("data-state"),
    stream: await page.evaluate(() => document.body.dataset.stream || null),
    error: await page.locator("#error").textContent(),
    callEnabled: await callButton.isEnabled(),
    keysEnabled: await keypad.getByRole("button", { name: "Pound" }).isEnabled(),
    hangupEnabled: await page.getByRole("button", { name: "Hang up" }).isEnabled(),
  });
  const streamOver = () => page.waitForFunction(() => document.body.dataset.stream, null, WAIT);
  const dialAs = async (id) => { // the dial's answer names `id`, a call the simulator never had
    await page.route("**/softphone/calls", (route) => (route.request().method() === "POST"
      ? route.fulfill({ status: 201, json: { id, state: "incoming", ended: false } }) : route.continue()),
    { times: 1 });
    await callButton.click();
    await page.waitForFunction((wanted) => document.body.dataset.callId === wanted, id, WAIT);
  };

  await dialAs("no-such-call");
  await streamOver();
  const unknown = await shown();

  await page.route(/\/softphone\/calls\/gone-call(\/|$)/, (route) => route.abort("connectionrefused"));
  await dialAs("gone-call");
  await streamOver();
  const gone = await shown();

  let release;
  const held = new Promise((resolve) => { release = resolve; });
  await page.route(/\/softphone\/calls\/[^/]+\/prompts\/1$/, async (route) => {
    await held;
    await route.continue().catch(() => {}); // the browser may have given up on it (a new src)
  });
  await callButton.click();
  await page.locator('#prompts li[data-name="main-menu"]').waitFor(WAIT);
  await keypad.getByRole("button", { name: "2", exact: true }).click();
  await page.locator('#prompts li[data-name="main-menu"][data-outcome="cancelled"]').waitFor(WAIT);
  release();
  await page.waitForFunction(() => {
    const audio = document.getElementById("prompt-audio");
    return audio.dataset.prompt === "connecting" && ["playing", "ended"].includes(audio.dataset.state);
  }, null, WAIT);
  const bargedIn = await shown();
  const callId = await page.evaluate(() => document.body.dataset.callId);

  console.log(`STOP ${callId}`);
  await page.waitForFunction(() => document.body.dataset.stream === "ended", null, WAIT);
  const stopped = await shown();
  if (errors.length) throw new Error(`the page threw: ${errors.join("; ")}`);
  console.log(JSON.stringify({ callId, unknown, gone, bargedIn, stopped, streams }));
} catch (error) {
  const status = page ? await page.locator("#status").textContent().catch(() => "") : "";
  console.error(`${error.message}\npage errors: ${errors.join("; ") || "none"}\nstatus shown: ${status}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
