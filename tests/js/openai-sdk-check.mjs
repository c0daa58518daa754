// Drives a KVLink.AspNetCore server with the official npm `openai` package, as a JavaScript client would:
// what should succeed (answers, streaming with logprobs, documents through an extra body field, models list and
// retrieve) and every error case (mistyped and unsupported fields, unknown documents and models, errors of a stream
// before and after it started). Each error must reach the SDK as an APIError with the status, message and param the
// server sent. Prints one JSON line: {"cases":[{name, ok, detail}], "emptyBodies", "serverErrors"}.
// Usage: node tests/js/openai-sdk-check.mjs http://127.0.0.1:PORT
import OpenAI from "openai";

const base = process.argv[2];
if (!base) { console.error("usage: node openai-sdk-check.mjs <server base address>"); process.exit(2); }

let emptyBodies = 0, serverErrors = 0;
// Counts what the SDK would otherwise hide: error responses without a body, and 5xx statuses.
const countingFetch = async (url, init) => {
  const response = await fetch(url, init);
  if (response.status >= 500) serverErrors++;
  if (response.status >= 400 && (await response.clone().text()).length === 0) emptyBodies++;
  return response;
};
const client = (path = "/v1") => new OpenAI({ baseURL: base + path, apiKey: "unused", maxRetries: 0, fetch: countingFetch });
const openai = client();
const cases = [];
async function check(name, run) {
  try { const detail = await run(); cases.push({ name, ok: true, detail: detail ?? null }); }
  catch (e) { cases.push({ name, ok: false, detail: `${e?.constructor?.name}: ${e?.message}` }); }
}
// Runs `run`, which must fail with an APIError of `status` naming `param`.
async function expectError(name, status, param, run) {
  await check(name, async () => {
    try { await run(); } catch (e) {
      if (!(e instanceof OpenAI.APIError)) throw new Error(`not an APIError: ${e?.constructor?.name}: ${e?.message}`);
      if (e.status !== status) throw new Error(`status ${e.status}, expected ${status}: ${e.message}`);
      if (param !== undefined && e.param !== param) throw new Error(`param ${e.param}, expected ${param}: ${e.message}`);
      if (!e.error?.message) throw new Error(`no message in the error body: ${JSON.stringify(e.error)}`);
      return `${e.status} ${e.param ?? ""}: ${e.error.message}`;
    }
    throw new Error("no error");
  });
}

const doc = await (await fetch(base + "/documents", { method: "POST", headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ title: "Neloun", text: "Neloun was born in Brivevale. Neloun works for Broultek." }) })).json();
const ask = [{ role: "user", content: "Where was Neloun born?" }];

await check("chat.completions.create with documents", async () => {
  const r = await openai.chat.completions.create({ model: "kvlink-demo", messages: ask, documents: [doc.id], max_tokens: 16, logprobs: true, top_logprobs: 2 });
  const text = r.choices[0].message.content;
  if (!text.includes("Brivevale")) throw new Error(`answer: ${text}`);
  if (r.choices[0].logprobs.content.length !== r.usage.completion_tokens) throw new Error("one logprob per token");
  if (!(r.usage.prompt_tokens_details.cached_tokens > 0)) throw new Error("no cached tokens");
  return text;
});
await check("streaming with logprobs in each chunk", async () => {
  const stream = await openai.chat.completions.create({ messages: ask, documents: [doc.id], max_tokens: 16, stream: true, stream_options: { include_usage: true }, logprobs: true });
  let text = "", usage = null, withLogprobs = 0, textChunks = 0;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (choice?.delta?.content) { textChunks++; text += choice.delta.content; if (choice.logprobs?.content?.length) withLogprobs++; }
    if (chunk.usage) usage = chunk.usage;
  }
  if (!text.includes("Brivevale") || !usage || withLogprobs !== textChunks) throw new Error(`text ${text}, usage ${!!usage}, ${withLogprobs}/${textChunks} chunks with logprobs`);
  return text;
});
await check("models.list and models.retrieve", async () => {
  const list = await openai.models.list();
  const model = list.data[0];
  const one = await openai.models.retrieve(model.id);
  if (model.id !== "kvlink-demo" || !(model.created > 1_600_000_000) || one.created !== model.created) throw new Error(JSON.stringify({ model, one }));
  return `${model.id} created ${model.created}`;
});

const wrong = [
  ["max_tokens", 1e10], ["max_tokens", 1.5], ["max_tokens", "10"], ["n", "5"], ["messages", [1]], ["messages", [null]],
  ["stop", [1]], ["stop", 5], ["temperature", "hot"], ["documents", [1]], ["documents", [null]], ["stream", "yes"],
  ["logprobs", "true"], ["seed", "x"], ["seed", 1e30], ["seed", 1.5], ["frequency_penalty", "x"], ["response_format", "json"],
  ["stream_options", true], ["logit_bias", { "50256": -100 }], ["tools", [{ type: "function", function: { name: "f" } }]],
  ["functions", [{ name: "f" }]], ["tool_choice", "auto"], ["parallel_tool_calls", true], ["audio", {}], ["modalities", ["text"]],
  ["prediction", {}], ["reasoning_effort", "low"], ["top_logprobs", 3],
];
for (const [field, value] of wrong)
  for (const stream of [false, true]) {
    if (stream && field === "stream") continue;
    await expectError(`${field}=${JSON.stringify(value)}${stream ? " (stream)" : ""}`, 400, field,
      () => openai.chat.completions.create({ messages: ask, max_tokens: 4, ...(stream ? { stream: true } : {}), [field]: value }));
  }

for (const stream of [false, true]) {
  const s = stream ? " (stream)" : "";
  await expectError(`unknown document${s}`, 404, "documents", () => openai.chat.completions.create({ messages: ask, documents: ["nope"], stream }));
  await expectError(`assistant first${s}`, 400, "messages", () => openai.chat.completions.create({ messages: [{ role: "assistant", content: "Hi" }, ...ask], stream }));
  await expectError(`over-long prompt${s}`, 400, "messages", () => openai.chat.completions.create({ messages: [{ role: "user", content: "word ".repeat(5000) }], stream }));
  await expectError(`unknown model${s}`, 404, "model", () => openai.chat.completions.create({ model: "gpt-4o", messages: ask, stream }));
}
await expectError("models.retrieve of an unknown model", 404, "model", () => openai.models.retrieve("gpt-4o"));
// An engine failure after the stream started arrives as an error event: the SDK throws it as an APIError (it has no
// status, the response being a 200), after the text that came before it, not as "TypeError: terminated".
await check("failure after the stream started", async () => {
  let text = "";
  try {
    const stream = await client("/failing/v1").chat.completions.create({ messages: ask, max_tokens: 8, stream: true });
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  } catch (e) {
    if (e instanceof OpenAI.APIError && e.error?.type === "server_error" && e.error?.message && text.length > 0) return `after "${text}": ${e.error.message}`;
    throw e;
  }
  throw new Error("the stream ended without an error");
});

console.log(JSON.stringify({ cases, emptyBodies, serverErrors }));
