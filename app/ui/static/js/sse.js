// Server-Sent Events read with fetch(). EventSource cannot send an Authorization header and the key
// must not go into the URL, so the stream is read as text and parsed here (the SSE wire format:
// "field: value" lines, a blank line ends a message). Resumes with Last-Event-ID after a drop.

import {authHeaders} from "./api.js";

const RETRY_MS = 2000;

/**
 * Follow `path` until the server sends `event: end` or `signal` aborts.
 * onMessage({id, event, data}) gets each message with `data` parsed as JSON.
 */
export async function follow(path, onMessage, signal) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const ended = await readOnce(path, lastId, signal, (msg) => {
        if (msg.id) lastId = msg.id;
        onMessage(msg);
      });
      if (ended) return;
    } catch (err) {
      if (signal.aborted) return;
      if (err.status && err.status < 500) throw err;  // refused (auth, gone): retrying will not help
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

async function readOnce(path, lastId, signal, deliver) {
  const headers = authHeaders({Accept: "text/event-stream"});
  if (lastId) headers["Last-Event-ID"] = lastId;
  const response = await fetch(path, {headers, signal});
  if (!response.ok) throw Object.assign(new Error(`stream: HTTP ${response.status}`), {status: response.status});
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return false;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const msg = parse(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (!msg) continue;
      if (msg.event === "end") return true;
      deliver(msg);
    }
  }
}

function parse(block) {
  const msg = {id: null, event: "message", data: ""};
  let hasData = false;
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;  // comments are the server's keep-alive pings
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") msg.id = value;
    else if (field === "event") msg.event = value;
    else if (field === "data") { msg.data += (hasData ? "\n" : "") + value; hasData = true; }
  }
  if (!hasData) return null;
  try { msg.data = JSON.parse(msg.data); } catch { /* left as text */ }
  return msg;
}
