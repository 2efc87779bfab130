// One whole IVR call of flows/main-menu.yaml through the softphone page, in headless Chromium (Debian's), driven
// by playwright-core. tests/test_softphone_browser.py runs it against `python -m simulator serve`:
//
//     node tests/softphone/ivr_call.mjs http://127.0.0.1:8090/softphone/ [screenshot.png]
//
// The caller dials the bot, hears the welcome and the main menu (the page's <audio> plays the WAVs the bot sent),
// presses 2 on the keypad for support, support rings out, the caller talks into the voicemail and ends it with #
// on the keyboard (held down: the key repeats, but it is one press), the bot says goodbye and hangs up. Prints what
// the page showed as JSON, with the keys it posted and what changed in the transcript's live region; exits 1 with
// the reason (and the page's transcript) when the page did not show what it should.
import { WAIT, argsOrUsage, launch } from "./chromium.mjs";

const [url, screenshot] = argsOrUsage("ivr_call.mjs", " [SCREENSHOT.png]");

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function promptPlaying(page, name) {
  // The <audio> element has this prompt's audio and the browser is playing it (its `playing` event fired).
  await page.waitForFunction((wanted) => {
    const audio = document.getElementById("prompt-audio");
    return audio.dataset.prompt === wanted && ["playing", "ended"].includes(audio.dataset.state);
  }, name, WAIT);
  return page.evaluate(() => {
    const audio = document.getElementById("prompt-audio");
    return { src: audio.currentSrc, uri: audio.dataset.uri, prompt: audio.dataset.prompt, state: audio.dataset.state,
      nowPlaying: document.getElementById("now-playing").textContent };
  });
}

const browser = await launch();
const errors = [];
let page;
try {
  page = await browser.newPage();
  page.on("pageerror", (error) => errors.push(String(error)));
  const tonesPosted = [];
  page.on("request", (request) => {
    if (request.method() === "POST" && request.url().endsWith("/tones")) tonesPosted.push(request.postDataJSON());
  });
  await page.goto(url);
  await page.locator("body[data-ready=true]").waitFor(WAIT);
  // What changes in the transcript, a live region: a screen reader announces each item added to it (again when
  // one is replaced), so a line that changes must change in place.
  await page.evaluate(() => {
    const list = document.getElementById("transcript");
    const seen = { added: {}, replacedInside: 0, changedText: 0, relevant: list.getAttribute("aria-relevant") };
    window.transcriptChanges = seen;
    new MutationObserver((records) => {
      for (const record of records) {
        if (record.type === "characterData") seen.changedText += 1;
        else if (record.target === list) {
          for (const node of record.addedNodes) seen.added[node.dataset.index] = (seen.added[node.dataset.index] || 0) + 1;
        } else seen.replacedInside += record.addedNodes.length + record.removedNodes.length;
      }
    }).observe(list, { childList: true, subtree: true, characterData: true });
  });
  const from = await page.getByLabel("From").inputValue();
  const to = await page.getByLabel("To").inputValue();
  const keypad = page.getByRole("group", { name: "Keypad" });
  const transcript = page.getByRole("list", { name: "Transcript" });
  const status = page.getByRole("status");
  const line = (text) => transcript.getByText(text).first().waitFor(WAIT);

  await page.getByRole("button", { name: "Call", exact: true }).click();
  await line("bot answers");
  const welcome = await promptPlaying(page, "welcome");
  const menu = await promptPlaying(page, "main-menu");
  const connected = await status.textContent();

  await keypad.getByRole("button", { name: "2", exact: true }).click();
  await line("caller presses 2");
  await promptPlaying(page, "connecting");
  const voicemail = await promptPlaying(page, "support-voicemail");
  await page.getByRole("button", { name: "Talk for 3 seconds" }).click();
  await line("caller speaks for 3 s");        // the beep: the recording takes what the caller says from here
  await page.keyboard.down("#");               // the keyboard's # is the keypad's: the voicemail's stop tone,
  await page.keyboard.down("#");               // held down: the browser repeats the key (event.repeat)
  await page.keyboard.down("#");
  await page.keyboard.up("#");
  await line("a stop tone: the recording ends");
  await line("bot hangs up");
  await page.locator("body[data-stream=ended]").waitFor(WAIT);
  const ended = await status.textContent();
  const keysEnabled = await keypad.getByRole("button", { name: "Pound" }).isEnabled();

  const lines = await transcript.getByRole("listitem").allTextContents();
  const prompts = await page.getByRole("list", { name: "Prompts" }).getByRole("listitem").evaluateAll(
    (items) => items.map((item) => ({ name: item.dataset.name, outcome: item.dataset.outcome,
      played: item.dataset.played === "true", uri: item.dataset.uri })));
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  check(errors.length === 0, `the page threw: ${errors.join("; ")}`);
  const transcriptChanges = await page.evaluate(() => window.transcriptChanges);
  console.log(JSON.stringify({ callId: await page.evaluate(() => document.body.dataset.callId), from, to,
    welcome, menu, voicemail, connected, ended, keysEnabled, lines, prompts, tonesPosted, transcriptChanges }));
} catch (error) {
  const shown = page ? await page.locator("#transcript li").allTextContents().catch(() => []) : [];
  console.error(`${error.message}\npage errors: ${errors.join("; ") || "none"}\ntranscript shown:\n${shown.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
