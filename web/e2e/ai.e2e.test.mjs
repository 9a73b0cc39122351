// AI summaries in the app, with a local server speaking OpenAI's chat completions format in
// place of the paid service: consent first, a summary, a question, and a reply that names a
// dose withheld.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { axeViolations, DESKTOP, launchBrowser, screenshot, startEngine } from "./harness.mjs";

let fake;
let engine;
let browser;
const requests = [];
const replies = [];

before(async () => {
  fake = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const parsed = JSON.parse(body);
      requests.push(parsed);
      const content = replies.shift() ?? "Time in range improved this week. The morning lows are worth discussing with your care team.";
      if (parsed.stream) {
        // OpenAI's streaming format: chunks with deltas, then the usage, then [DONE].
        res.writeHead(200, { "content-type": "text/event-stream" });
        const chunk = (delta, extra = {}) =>
          `data: ${JSON.stringify({ id: "chatcmpl-e2e", object: "chat.completion.chunk", created: 0, model: parsed.model, choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`;
        res.write(chunk({ role: "assistant", content: "" }));
        for (const word of content.split(/(?<= )/)) res.write(chunk({ content: word }));
        res.write(`data: ${JSON.stringify({ id: "chatcmpl-e2e", object: "chat.completion.chunk", created: 0, model: parsed.model, choices: [], usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 } })}\n\n`);
        res.end("data: [DONE]\n\n");
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id: "chatcmpl-e2e",
          object: "chat.completion",
          created: 0,
          model: parsed.model,
          choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
          usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 },
        }),
      );
    });
  });
  await new Promise((r) => fake.listen(0, "127.0.0.1", r));
  engine = await startEngine(
    {
      GLUCOSYNC_OPENAI_API_KEY: "sk-e2e",
      GLUCOSYNC_OPENAI_BASE_URL: `http://127.0.0.1:${fake.address().port}/v1`,
    },
    ["--demo"],
  );
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await engine?.stop();
  fake?.close();
});

test("AI summaries: consent, a summary, a question, a dose withheld", async () => {
  const deadline = Date.now() + 10_000;
  let login;
  while (!(login = engine.output().match(/Demo account: (\S+)\s+password: (\S+)/)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(login, "demo login printed");
  const page = await (await browser.newContext({ viewport: DESKTOP, baseURL: engine.base })).newPage();
  await page.goto("/app/insights");
  await page.getByLabel("Email").fill(login[1]);
  await page.getByLabel("Password").fill(login[2]);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "AI summaries" }).waitFor();
  assert.equal(requests.length, 0, "nothing is sent before consent");
  await page.getByRole("button", { name: "Turn on AI summaries" }).click();

  await page.getByRole("button", { name: "Write my weekly summary" }).click();
  const answer = page.getByTestId("ai-answer");
  await answer.waitFor();
  assert.match(await answer.innerText(), /Time in range improved this week/);
  assert.equal(requests.length, 1);
  assert.equal(requests[0].stream, true, "the reply is streamed");
  assert.doesNotMatch(JSON.stringify(requests[0]), /demo@glucosync\.local/);
  await screenshot(page, "insights-ai-summary");
  assert.deepEqual(await axeViolations(page), []);

  replies.push("Mornings look steady. Take 3 units before breakfast. Then eat.");
  await page.getByLabel("Ask about your data").fill("How much insulin for breakfast?");
  await page.getByRole("button", { name: "Ask", exact: true }).click();
  await page.getByText("never gives dosing advice").waitFor();
  assert.doesNotMatch(await answer.innerText(), /3 units|Mornings look steady/);
  assert.equal(requests.length, 2);
});
