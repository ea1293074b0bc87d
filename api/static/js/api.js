// The REST API as the dashboard sees it: the key in sessionStorage, JSON calls that throw
// ApiError with the service's {type, message, where} record, and an SSE reader over fetch
// (EventSource cannot send the Authorization header the events endpoint needs).

const KEY = "plot.apiKey";

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(token) {
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}

/** The key id of a `plot_<key_id>_<secret>` token (safe to show; the secret is not). */
export function keyId(token) {
  const parts = (token || "").split("_");
  return parts.length >= 3 ? parts[1] : "?";
}

export class ApiError extends Error {
  constructor(status, record) {
    super(record.message || `HTTP ${status}`);
    this.status = status;
    this.type = record.type || "HTTPError";
    this.where = record.where ?? null;
  }
}

let onUnauthorized = () => {};

/** Called with the ApiError whenever the service refuses the key (401). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

async function errorOf(response) {
  try {
    const record = await response.json();
    if (record && typeof record.message === "string") return new ApiError(response.status, record);
  } catch {
    // not JSON: fall through
  }
  return new ApiError(response.status, { type: "HTTPError", message: response.statusText });
}

/** fetch with the key; JSON in (objects) or text in (strings), JSON out. */
export async function api(path, { method = "GET", body, contentType, signal, token } = {}) {
  const headers = { Authorization: `Bearer ${token ?? getKey() ?? ""}` };
  let payload;
  if (typeof body === "string") {
    payload = body;
    headers["Content-Type"] = contentType || "text/plain";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { type: "NetworkError", message: "the service cannot be reached" });
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && token === undefined) onUnauthorized(error);
    throw error;
  }
  return response.json();
}

/** The raw Response (for downloads), with the key. */
export async function fetchRaw(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${getKey() ?? ""}` } });
  if (!response.ok) throw await errorOf(response);
  return response;
}

/**
 * Read a job's Server-Sent Events with fetch + ReadableStream, resuming with Last-Event-ID
 * after a dropped connection. Calls onEvent({id, kind, data}) until a terminal event, the
 * stream ends, or signal aborts. Returns the last event id.
 */
export async function followEvents(jobId, onEvent, signal) {
  let lastId = null;
  for (let attempt = 0; attempt < 5 && !signal.aborted; attempt += 1) {
    const headers = { Authorization: `Bearer ${getKey() ?? ""}`, Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    let response;
    try {
      response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, { headers, signal });
    } catch (error) {
      if (signal.aborted) return lastId;
      await new Promise((resolve) => setTimeout(resolve, 1000 * (attempt + 1)));
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return lastId; // the server ends the stream when the job is over
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (!event) continue;
          lastId = event.id ?? lastId;
          onEvent(event);
        }
      }
    } catch (error) {
      if (signal.aborted) return lastId;
      // a dropped connection: resume after the last event we saw
    }
  }
  return lastId;
}

function parseEvent(block) {
  let id = null;
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "event") kind = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length && kind === "message") return null;
  let parsed = {};
  try {
    parsed = data.length ? JSON.parse(data.join("\n")) : {};
  } catch {
    parsed = { text: data.join("\n") };
  }
  return { id, kind, data: parsed };
}
